"""A signing worker in a process of its own, for tests/pki/test_sad_durability.py.

Runs ``RemoteSigning.sign_hashes`` with one SAD against the test's database and token
directory, and stops dead inside the transaction that uses the SAD up: the conditional
UPDATE has run (the row is locked), the signature is made, nothing is committed. It writes
the marker file, then waits to be killed (SIGKILL)."""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

import pki.signing.service
from core.clock import FrozenClock
from core.db import make_engine, make_session_factory
from hsm import InMemoryPinAttemptStore, TokenLibrary
from pki.signing.ports import HolderContact
from pki.signing.service import RemoteSigning, issuer_chain


class _Directory:
    def contact(self, session: Session, cin: str, serial: str) -> HolderContact | None:
        return HolderContact(holder_id=1, mobile="+212600001234", hosted=True, ready=True)


class _Codes:
    def send(self, session: Session, *args: Any, **kwargs: Any) -> str:
        raise AssertionError("the worker sends no code")


def main() -> None:
    job = json.loads(sys.argv[1])
    marker = Path(job["marker"])
    record = pki.signing.service.record

    def record_then_hang(session: Session, *args: Any, **kwargs: Any) -> Any:
        result = record(session, *args, **kwargs)
        if kwargs.get("action") == "signing.hashes.signed":
            session.flush()
            marker.write_text("in the transaction, before commit")
            while True:
                time.sleep(1)
        return result

    pki.signing.service.record = record_then_hang  # type: ignore[assignment]
    engine = make_engine(job["url"])
    service = RemoteSigning(make_session_factory(engine),
                            FrozenClock(datetime.fromisoformat(job["at"])),
                            TokenLibrary(job["module"], attempts=InMemoryPinAttemptStore()),
                            directory=_Directory(), codes=_Codes(), chain=issuer_chain)
    service.sign_hashes(job["serial"], sad=job["sad"], digests=[bytes.fromhex(job["digest"])],
                        hash_algorithm="sha256", sign_algorithm=None, client=job["client"],
                        actor="worker")
    marker.write_text("committed")  # not reached


if __name__ == "__main__":
    main()

"""A SAD is used up only by the commit that records its signature (issue 10, point 6).

These tests commit for real, from several threads and from a second process, so they run
on a database of their own holding copies of the test PKI's authority and certificate rows
(the keys stay on the PKI's SoftHSM tokens)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from core.audit import AuditEvent
from core.db import make_engine, make_session_factory
from core.migrate import upgrade
from pki.models import AuthorityRecord, CertificateRecord
from pki.signing.errors import SadInvalid
from pki.signing.models import PURPOSE_HASH, SigningAuthorization
from pki.signing.service import RemoteSigning, issuer_chain
from tests.conftest import _drop_postgres, _fresh_postgres
from tests.pki.conftest import ACTOR, World
from tests.pki.test_pades_remote import CLIENT, Codes, Directory

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Durable:
    url: str
    engine: Engine
    sessions: sessionmaker[Session]
    service: RemoteSigning
    codes: Codes
    world: World

    def authorize(self, digests: list[bytes]) -> str:
        serial = self.world.serials["good"]
        self.service.send_otp(serial, client=CLIENT, actor=ACTOR)
        return self.service.authorize(serial, pin=self.world.holder_pins["good"],
                                      otp=self.codes.last, digests=digests,
                                      hash_algorithm="sha256", purpose=PURPOSE_HASH,
                                      client=CLIENT, actor=ACTOR).sad

    def sign(self, sad: str, digests: list[bytes]) -> list[bytes]:
        return self.service.sign_hashes(self.world.serials["good"], sad=sad, digests=digests,
                                        hash_algorithm="sha256", sign_algorithm=None,
                                        client=CLIENT, actor=ACTOR)

    def sad_status(self, sad: str) -> str:
        with self.sessions() as session:
            return session.scalars(select(SigningAuthorization.status).where(
                SigningAuthorization.sad_hash == hashlib.sha256(sad.encode()).hexdigest())
            ).one()

    def signed_events(self) -> int:
        with self.sessions() as session:
            return session.scalar(select(func.count()).select_from(AuditEvent).where(
                AuditEvent.action == "signing.hashes.signed")) or 0


@pytest.fixture
def durable(world: World, request: pytest.FixtureRequest, tmp_path: Path
            ) -> Iterator[Durable]:
    name = None
    if world.engine.dialect.name == "sqlite":
        url = f"sqlite:///{tmp_path / 'durable.db'}"
        engine = make_engine(url)
    else:
        server = request.getfixturevalue("postgres_server_url")
        name, engine = _fresh_postgres(server)
        url = engine.url.render_as_string(hide_password=False)
    try:
        upgrade(engine)
        with world.engine.connect() as source, engine.begin() as target:
            for model in (AuthorityRecord, CertificateRecord):
                rows = [dict(r._mapping) for r in source.execute(
                    select(model.__table__).order_by(model.__table__.c.id))]
                target.execute(insert(model.__table__), rows)
        sessions = make_session_factory(engine)
        codes = Codes()
        service = RemoteSigning(sessions, world.clock, world.library, directory=Directory(),
                                codes=codes, chain=issuer_chain)
        yield Durable(url, engine, sessions, service, codes, world)
    finally:
        engine.dispose()
        if name is not None:
            _drop_postgres(request.getfixturevalue("postgres_server_url"), name)


def test_two_concurrent_uses_of_one_sad_make_one_signature(durable: Durable) -> None:
    digests = [hashlib.sha256(b"one permit, two requests").digest()]
    for _round in range(3):
        sad = durable.authorize(digests)
        start = threading.Barrier(4)
        results: list[object] = []

        def use() -> None:
            start.wait()
            try:
                results.append(durable.sign(sad, digests))
            except SadInvalid as exc:
                results.append(exc)

        threads = [threading.Thread(target=use) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sum(isinstance(r, list) for r in results) == 1, results
        assert sum(isinstance(r, SadInvalid) for r in results) == 3, results
        assert durable.sad_status(sad) == "used"
    assert durable.signed_events() == 3


def test_a_worker_killed_mid_signature_leaves_the_sad_usable(durable: Durable,
                                                             tmp_path: Path) -> None:
    digests = [hashlib.sha256(b"permit signed while the worker dies").digest()]
    sad = durable.authorize(digests)
    marker = tmp_path / "marker"
    job = {"url": durable.url, "module": durable.world.module, "serial":
           durable.world.serials["good"], "sad": sad, "digest": digests[0].hex(),
           "client": CLIENT, "at": durable.world.clock.now().isoformat(),
           "marker": str(marker)}
    env = dict(os.environ, SOFTHSM2_CONF=str(durable.world.conf),
               PYTHONPATH=str(ROOT))
    errors = tmp_path / "worker.err"
    with errors.open("wb") as stderr:
        child = subprocess.Popen(
            [sys.executable, "-m", "tests.pki.sad_child", json.dumps(job)], cwd=ROOT,
            env=env, stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        while not marker.exists():  # the child is inside the transaction that uses the SAD
            if child.poll() is not None:
                pytest.fail("the worker ended on its own: "
                            + errors.read_text(errors="replace")[-2000:])
            time.sleep(0.05)
    finally:
        if child.poll() is None:
            os.kill(child.pid, signal.SIGKILL)  # the child we started, by its pid
        child.wait()
    assert child.returncode == -signal.SIGKILL
    assert durable.sad_status(sad) == "active"
    assert durable.signed_events() == 0
    (signature,) = durable.sign(sad, digests)  # another process, the same SAD: it works
    assert signature
    assert durable.sad_status(sad) == "used"
    assert durable.signed_events() == 1
    with pytest.raises(SadInvalid):
        durable.sign(sad, digests)

"""Wiring: one Runtime per process holds the settings, the database and the token layer.

Built by the CLI and by ``create_app``; domain services receive its parts as arguments and
never see the Runtime itself. The token library is loaded lazily, on first use, so a
pre-fork server loads it in each worker after the fork; a caller that already holds one (a
tool, the tests' SoftHSM2 library) passes it as ``tokens=``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from core.clock import Clock, SystemClock
from core.config import Settings
from core.db import make_engine, make_session_factory, transaction

if TYPE_CHECKING:
    from hsm import TokenLibrary


class Runtime:
    def __init__(self, settings: Settings, *, clock: Clock | None = None,
                 engine: Engine | None = None, tokens: TokenLibrary | None = None) -> None:
        self.settings = settings
        self.clock: Clock = clock or SystemClock()
        settings.var_dir.mkdir(parents=True, exist_ok=True)
        self.engine = engine or make_engine(settings.effective_database_url)
        self.sessions: sessionmaker[Session] = make_session_factory(self.engine)
        self._tokens: TokenLibrary | None = tokens
        self._tokens_lock = threading.Lock()

    @classmethod
    def from_env(cls) -> Runtime:
        return cls(Settings.from_env())

    @contextmanager
    def unit_of_work(self) -> Iterator[Session]:
        with transaction(self.sessions) as session:
            yield session

    def tokens(self) -> TokenLibrary:
        with self._tokens_lock:
            if self._tokens is None:
                from delivery.pins import DatabasePinAttemptStore
                from hsm import TokenLibrary

                self._prepare_softhsm()
                # Wrong PINs are counted in the database, so the lockout holds across
                # processes and restarts (SoftHSM2 itself never locks).
                self._tokens = TokenLibrary(
                    self.settings.pkcs11_module, max_attempts=self.settings.pin_max_attempts,
                    attempts=DatabasePinAttemptStore(self.engine, self.clock))
            return self._tokens

    def _prepare_softhsm(self) -> None:
        """With SoftHSM2 and no SOFTHSM2_CONF, keep tokens under var/ rather than in the
        system-wide directory."""
        if "softhsm" not in Path(self.settings.pkcs11_module).name or \
                os.environ.get("SOFTHSM2_CONF"):
            return
        from hsm.softhsm import write_softhsm_config

        os.environ["SOFTHSM2_CONF"] = str(
            write_softhsm_config(self.settings.var_dir / "softhsm"))

    def close(self) -> None:
        if self._tokens is not None:
            self._tokens.close()
        self.engine.dispose()

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

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session, sessionmaker

from core.clock import Clock, SystemClock
from core.config import Settings
from core.db import make_engine, make_session_factory, reading, transaction

if TYPE_CHECKING:
    from hsm import TokenLibrary


#: An automatically started token server ends after this long without any client.
TOKEN_SERVER_IDLE_SECONDS = 600.0


def is_softhsm(module_path: str) -> bool:
    return "softhsm" in Path(module_path).name


def token_server_socket(settings: Settings) -> Path:
    """Where the embedded token server listens (its pid file and log sit beside it)."""
    return settings.var_dir.absolute() / "hsm" / "pkcs11.sock"


def start_token_server(settings: Settings) -> Path | None:
    """For a pre-fork server's master (gunicorn): start the token server the settings call
    for before the workers fork. Returns its pid file if THIS call started it (the caller
    then ends it on exit), else ``None``."""
    if settings.pkcs11_server != "auto" or not is_softhsm(settings.pkcs11_module):
        return None
    from hsm.server import ensure_server

    Runtime._prepare_softhsm_for(settings)
    socket = token_server_socket(settings)
    _, started = ensure_server(settings.pkcs11_module, socket)
    return socket.with_suffix(".pid") if started else None


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

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """A connection for reads only (:func:`core.db.reading`). Units of work bound to
        one connection (the tests' rolled-back transaction) read on that connection."""
        bound = self.sessions.kw.get("bind")
        if isinstance(bound, Connection):
            yield bound
            return
        with reading(self.engine) as connection:
            yield connection

    def tokens(self) -> TokenLibrary:
        with self._tokens_lock:
            if self._tokens is None:
                from delivery.pins import DatabasePinAttemptStore
                from hsm import TokenLibrary

                self._prepare_softhsm()
                # Wrong PINs are counted in the database, so the lockout holds across
                # processes and restarts (SoftHSM2 itself never locks).
                module = self._token_module()
                self._tokens = TokenLibrary(
                    module, max_attempts=self.settings.pin_max_attempts,
                    attempts=DatabasePinAttemptStore(self.engine, self.clock),
                    signing_lanes=self.settings.signing_lanes)
            return self._tokens

    def _token_module(self) -> str:
        """The PKCS#11 module this process loads: the configured one, or p11-kit's client
        module pointed at the token server (P11_KIT_SERVER_ADDRESS), so that every process
        of the installation sees one token state (see docs/hsm.md)."""
        from hsm.server import client_module_path, ensure_server, server_address

        mode = self.settings.pkcs11_server
        module = self.settings.pkcs11_module
        if mode == "off" or (mode == "auto" and not is_softhsm(module)):
            return module
        if mode == "auto":
            address, _ = ensure_server(module, token_server_socket(self.settings),
                                       idle_timeout=TOKEN_SERVER_IDLE_SECONDS)
        elif mode.startswith("unix:"):
            address = mode
        else:
            address = server_address(Path(mode).absolute())
        os.environ["P11_KIT_SERVER_ADDRESS"] = address
        return client_module_path()

    def _prepare_softhsm(self) -> None:
        self._prepare_softhsm_for(self.settings)

    @staticmethod
    def _prepare_softhsm_for(settings: Settings) -> None:
        """With SoftHSM2 and no SOFTHSM2_CONF, keep tokens under var/ rather than in the
        system-wide directory."""
        if (not is_softhsm(settings.pkcs11_module) or os.environ.get("SOFTHSM2_CONF")
                or settings.pkcs11_server not in {"auto", "off"}):
            return  # a token server elsewhere holds the token files
        from hsm.softhsm import write_softhsm_config

        settings.var_dir.mkdir(parents=True, exist_ok=True)
        os.environ["SOFTHSM2_CONF"] = str(
            write_softhsm_config(settings.var_dir.absolute() / "softhsm"))

    def close(self) -> None:
        if self._tokens is not None:
            self._tokens.close()
        self.engine.dispose()

"""Holders' PINs on the service side: the wrong-PIN counter and the change at first use.

The token layer counts wrong user PINs through a :class:`hsm.PinAttemptStore`;
:class:`DatabasePinAttemptStore` keeps that count in the database so that it holds across
processes and restarts. Each of its operations is ONE statement in autocommit on its own
connection: a failure is counted even when the caller's transaction is rolled back, and a
read never waits for a writer. (On SQLite a write still waits for the database's single
write lock: never check a holder-supplied PIN while holding an open transaction. The
functions here that take ``sessions`` follow that rule: they commit their reads before
calling the token layer.)
"""

from __future__ import annotations

import fcntl
import os
import threading
from datetime import UTC, datetime

from sqlalchemy import create_engine, delete, event, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

import hsm
from core.audit import record
from core.clock import Clock
from core.db import transaction
from delivery.errors import IllegalTransition, PinLocked, PinPolicy, PinRejected
from delivery.models import ACTIVE, DEVICE, HANDED_OVER, CertificateRequest, PinAttempt
from delivery.requests import get_request


class DatabasePinAttemptStore:
    """A :class:`hsm.PinAttemptStore` in table ``delivery_pin_attempt``. Stores no PIN."""

    def __init__(self, engine: Engine, clock: Clock | None = None) -> None:
        self._clock = clock
        self._held: dict[tuple[int, str], int] = {}
        # (thread, label) of reservations that found no failure counted (SQLite)
        self._clean: set[tuple[int, str]] = set()
        self._local_lock = threading.Lock()
        if engine.dialect.name == "sqlite":
            # A plain engine (no BEGIN IMMEDIATE): autocommit statements, WAL readers.
            self._engine = create_engine(
                engine.url, isolation_level="AUTOCOMMIT",
                connect_args={"timeout": 30, "check_same_thread": False})

            @event.listens_for(self._engine, "connect")
            def _connect(dbapi_conn: object, _record: object) -> None:
                cursor = dbapi_conn.cursor()  # type: ignore[attr-defined]
                cursor.execute("PRAGMA busy_timeout=30000")
                cursor.close()

            self._postgres = False
            database = engine.url.database
            self._lock_path: str | None = (
                f"{os.path.abspath(database)}.pin-lock"
                if database and database != ":memory:" else None)
        else:
            self._lock_path = None
            self._engine = engine.execution_options(isolation_level="AUTOCOMMIT")
            self._postgres = True

    def _now(self) -> datetime:
        return self._clock.now() if self._clock else datetime.now(UTC)

    def failures(self, token_label: str) -> int:
        with self._engine.connect() as conn:
            count = conn.scalar(select(PinAttempt.failures)
                                .where(PinAttempt.token_label == token_label))
        return int(count or 0)

    def record_failure(self, token_label: str) -> int:
        now = self._now()
        insert = pg_insert if self._postgres else sqlite_insert
        statement = insert(PinAttempt).values(  # type: ignore[operator]
            token_label=token_label, failures=1, updated_at=now,
        ).on_conflict_do_update(
            index_elements=[PinAttempt.token_label],
            set_={"failures": PinAttempt.failures + 1, "updated_at": now},
        ).returning(PinAttempt.failures)
        with self._engine.connect() as conn:
            count = conn.scalar(statement)
        return int(count or 0)

    def reserve(self, token_label: str, max_attempts: int) -> int | None:
        """Count one attempt before the token sees the PIN, unless ``max_attempts`` are
        counted; ``None`` when locked.

        PostgreSQL: one conditional upsert (the row lock orders concurrent reservations),
        whatever the hosts. SQLite (one host by nature): an exclusive file lock beside the
        database serialises PIN checks of every process until :meth:`confirm`,
        :meth:`refund` or :meth:`reset`; the count is written only on a wrong PIN, as a
        write would wait for a transaction the caller may hold open on the same file."""
        if not self._postgres:
            self._acquire(token_label)
            count = self.failures(token_label)
            if count >= max_attempts:
                self._release(token_label)
                return None
            if count == 0:  # read under the lock: reset need not read it again
                self._clean.add((threading.get_ident(), token_label))
            return count + 1
        now = self._now()
        statement = pg_insert(PinAttempt).values(
            token_label=token_label, failures=1, updated_at=now,
        ).on_conflict_do_update(
            index_elements=[PinAttempt.token_label],
            set_={"failures": PinAttempt.failures + 1, "updated_at": now},
            where=PinAttempt.failures < max_attempts,
        ).returning(PinAttempt.failures)
        with self._engine.connect() as conn:
            reserved = conn.scalar(statement)
        return None if reserved is None else int(reserved)

    def confirm(self, token_label: str) -> None:
        """The reserved attempt was a wrong PIN: keep it counted."""
        if self._postgres:
            return
        try:
            self.record_failure(token_label)
        finally:
            self._release(token_label)

    def refund(self, token_label: str) -> None:
        if not self._postgres:
            self._release(token_label)
            return
        with self._engine.connect() as conn:
            conn.execute(update(PinAttempt)
                         .where(PinAttempt.token_label == token_label,
                                PinAttempt.failures > 0)
                         .values(failures=PinAttempt.failures - 1, updated_at=self._now()))

    def reset(self, token_label: str) -> None:
        # SQLite: no needless write, and no second read when reserve found no failure
        # (the count cannot have moved: every PIN check holds the lock until here).
        clean = (threading.get_ident(), token_label) in self._clean
        try:
            if self._postgres or (not clean and self.failures(token_label)):
                with self._engine.connect() as conn:
                    conn.execute(delete(PinAttempt)
                                 .where(PinAttempt.token_label == token_label))
        finally:
            self._release(token_label)

    # SQLite's cross-process serialisation of PIN checks (see reserve).

    def _acquire(self, token_label: str) -> None:
        key = (threading.get_ident(), token_label)
        if self._lock_path is None:
            self._local_lock.acquire()
            self._held[key] = -1
            return
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        self._held[key] = fd

    def _release(self, token_label: str) -> None:
        self._clean.discard((threading.get_ident(), token_label))
        fd = self._held.pop((threading.get_ident(), token_label), None)
        if fd is None:
            return
        if fd == -1:
            self._local_lock.release()
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def dispose(self) -> None:
        self._engine.dispose()


def _credential_label(request: CertificateRequest) -> str:
    if request.status not in (HANDED_OVER, ACTIVE) or request.token_label is None:
        raise IllegalTransition(f"request {request.id} is {request.status}: its PIN can be "
                                "changed once the holder has the token",
                                request_id=request.id, status=request.status)
    return request.token_label


def change_pin(sessions: sessionmaker[Session], clock: Clock, tokens: hsm.TokenLibrary,
               request_id: int, *, old_pin: str, new_pin: str, actor: str) -> None:
    """The holder changes the PIN the service set (required before the first signature).

    Runs its own short transactions (see the module note): read, change on the token
    (wrong PINs counted and locking), then record. Raises PinPolicy, PinRejected (with
    ``attempts_left``) or PinLocked; the PINs appear in no error, log or audit event."""
    with transaction(sessions) as session:
        label = _credential_label(get_request(session, request_id))
    try:
        tokens.change_pin(label, old_pin, new_pin)
    except hsm.PinPolicyViolation as exc:
        raise PinPolicy(exc.detail, reason=exc.extras.get("reason")) from exc
    except hsm.PinLocked as exc:
        raise PinLocked("the token is locked after too many wrong PINs: ask for a PIN reset",
                        request_id=request_id) from exc
    except hsm.PinIncorrect as exc:
        raise PinRejected("wrong current PIN", request_id=request_id,
                          attempts_left=exc.extras.get("attempts_left")) from exc
    with transaction(sessions) as session:
        _record_changed(session, clock, request_id, actor=actor, how="token")


def record_pin_changed(session: Session, clock: Clock, request_id: int, *,
                       actor: str) -> CertificateRequest:
    """A device token's holder changed the PIN on their own machine (the service cannot see
    that token): record their declaration."""
    request = get_request(session, request_id, lock=True)
    if request.token_form != DEVICE:
        raise IllegalTransition("a hosted token's PIN is changed through the service",
                                request_id=request_id)
    _credential_label(request)
    return _record_changed(session, clock, request_id, actor=actor, how="declared")


def _record_changed(session: Session, clock: Clock, request_id: int, *, actor: str,
                    how: str) -> CertificateRequest:
    request = get_request(session, request_id, lock=True)
    request.pin_change_required = False
    request.pin_changed_at = clock.now()
    request.updated_at = request.pin_changed_at
    session.flush()
    record(session, clock, actor=actor, action="delivery.pin.changed",
           object_type="certificate_request", object_id=request.id,
           summary={"holder_id": request.holder_id, "how": how})
    return request


def count_locked_tokens(session: Session, max_attempts: int) -> int:
    """Tokens whose wrong-PIN counter reached the lockout (``TAWQI_PIN_MAX_ATTEMPTS``)."""
    return session.scalar(select(func.count()).select_from(PinAttempt).where(
        PinAttempt.failures >= max_attempts)) or 0

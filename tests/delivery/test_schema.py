"""The hand-written migration matches the models; the PIN attempt store counts outside the
caller's transaction."""

from __future__ import annotations

import uuid

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

import delivery.models  # noqa: F401  (registers the tables on Base.metadata)
from core.db import Base
from delivery.pins import DatabasePinAttemptStore
from hsm import PinAttemptStore


def test_migration_matches_models(db_engine: Engine) -> None:
    with db_engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diffs = [d for d in compare_metadata(context, Base.metadata) if "delivery_" in repr(d)]
    assert diffs == []


def test_pin_attempts_survive_the_callers_rollback(db_engine: Engine) -> None:
    store = DatabasePinAttemptStore(db_engine)
    other_process = DatabasePinAttemptStore(db_engine)
    assert isinstance(store, PinAttemptStore)
    label = f"t-{uuid.uuid4().hex[:12]}"
    try:
        with Session(db_engine) as session:  # a caller's transaction, rolled back
            session.begin()
            session.connection()  # SQLite: BEGIN IMMEDIATE, the write lock is held
            assert store.failures(label) == 0  # reads never wait for it
            if db_engine.dialect.name == "postgresql":
                assert store.record_failure(label) == 1  # counted in its own statement
            session.rollback()
        if db_engine.dialect.name != "postgresql":
            assert store.record_failure(label) == 1
        assert [store.record_failure(label) for _ in range(2)] == [2, 3]
        assert other_process.failures(label) == 3
        assert other_process.record_failure(label) == 4
        store.reset(label)
        assert other_process.failures(label) == 0
        store.reset(label)  # nothing to forget: no write
    finally:
        store.dispose()
        other_process.dispose()


def test_pin_attempt_reservations_stop_at_the_maximum_across_stores(db_engine: Engine) -> None:
    """Two stores (as two processes) following the protocol: reserve, then exactly one of
    confirm (wrong PIN), refund (not judged) or reset (right PIN). The count never passes
    the maximum and a refused reservation holds nothing."""
    store = DatabasePinAttemptStore(db_engine)
    other_process = DatabasePinAttemptStore(db_engine)
    label = f"t-{uuid.uuid4().hex[:12]}"
    try:
        for expected in (1, 2, 3):  # three wrong PINs, through either store
            either = (store, other_process)[expected % 2]
            assert either.reserve(label, 3) == expected
            either.confirm(label)
        assert other_process.reserve(label, 3) is None
        assert store.reserve(label, 3) is None
        assert store.failures(label) == 3
        store.reset(label)  # the SO reset
        assert store.reserve(label, 3) == 1
        store.refund(label)  # the token went away: not counted
        assert other_process.failures(label) == 0
        assert other_process.reserve(label, 3) == 1
        other_process.reset(label)  # the right PIN
        assert store.failures(label) == 0
    finally:
        store.dispose()
        other_process.dispose()

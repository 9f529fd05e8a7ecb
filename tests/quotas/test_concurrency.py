"""50 threads, each with its own connection, race for one commune's last 5 certificates."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import delete, select
from sqlalchemy.engine import Engine

from core.clock import FrozenClock
from core.db import make_session_factory, transaction
from quotas import ledger
from quotas.ledger import Entity
from quotas.models import LedgerEntry, Reservation
from tests.conftest import FROZEN_AT

LARGE = Entity.parse("01.051.01.01")  # Al Hoceima: 5 a year


def test_fifty_threads_never_over_issue(db_engine: Engine) -> None:
    year = 2040
    factory = make_session_factory(db_engine)
    clock = FrozenClock(FROZEN_AT)
    start = threading.Barrier(50)

    def attempt(n: int) -> bool:
        start.wait()
        with transaction(factory) as session:
            return ledger.reserve(session, clock, LARGE, year, actor=f"t{n}").allowed

    try:
        with ThreadPoolExecutor(max_workers=50) as pool:
            results = list(pool.map(attempt, range(50)))
        assert sum(results) == 5
        with transaction(factory) as session:
            row = session.scalars(select(LedgerEntry).where(
                LedgerEntry.entity_code == LARGE.code, LedgerEntry.year == year)).one()
            assert (row.reserved, row.consumed, row.available) == (5, 0, 0)
            assert len(session.scalars(select(Reservation).where(
                Reservation.ledger_id == row.id)).all()) == 5
    finally:
        with transaction(factory) as session:
            ids = select(LedgerEntry.id).where(LedgerEntry.year == year)
            session.execute(delete(Reservation).where(Reservation.ledger_id.in_(ids)))
            session.execute(delete(LedgerEntry).where(LedgerEntry.year == year))


def test_concurrent_release_counts_once(db_engine: Engine) -> None:
    year = 2041
    factory = make_session_factory(db_engine)
    clock = FrozenClock(FROZEN_AT)
    with transaction(factory) as session:
        reservation = ledger.reserve(session, clock, LARGE, year, actor="c").reservation_id
    assert reservation
    start = threading.Barrier(10)

    def attempt(_: int) -> bool:
        start.wait()
        try:
            with transaction(factory) as session:
                ledger.release(session, clock, reservation, actor="op")
            return True
        except Exception:
            return False

    try:
        with ThreadPoolExecutor(max_workers=10) as pool:
            assert sum(pool.map(attempt, range(10))) == 1
        with transaction(factory) as session:
            assert ledger.check(session, LARGE, year).remaining == 5
    finally:
        with transaction(factory) as session:
            ids = select(LedgerEntry.id).where(LedgerEntry.year == year)
            session.execute(delete(Reservation).where(Reservation.ledger_id.in_(ids)))
            session.execute(delete(LedgerEntry).where(LedgerEntry.year == year))

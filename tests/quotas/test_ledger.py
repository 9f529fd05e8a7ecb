"""Reserve, consume, release, partnerships and billing."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.audit import AuditEvent
from core.clock import FrozenClock
from quotas import ledger
from quotas.errors import InvalidPartnership, QuotaExhausted, ReservationClosed
from quotas.ledger import Entity
from quotas.models import Commune, LedgerEntry

SMALL = Entity.parse("01.051.03.01")  # a rural commune of Al Hoceima with < 20,000 people


def _audit_count(session: Session) -> int:
    return int(session.scalar(select(func.count(AuditEvent.seq))) or 0)


def test_reserve_until_exhausted(session: Session, clock: FrozenClock) -> None:
    assert ledger.check(session, SMALL, 2026).remaining == 3
    decisions = [ledger.reserve(session, clock, SMALL, 2026, actor="c") for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert decisions[2].remaining == 0
    assert "exhausted" in decisions[3].reason
    assert decisions[3].resets_on == date(2027, 1, 1)
    with pytest.raises(QuotaExhausted):
        decisions[3].raise_if_denied()
    assert not ledger.check(session, SMALL, 2026).allowed


def test_check_writes_nothing(session: Session) -> None:
    before = _audit_count(session)
    ledger.check(session, SMALL, 2027)
    assert _audit_count(session) == before


def test_release_gives_back_and_consume_keeps(session: Session, clock: FrozenClock) -> None:
    first = ledger.reserve(session, clock, SMALL, 2026, actor="c")
    second = ledger.reserve(session, clock, SMALL, 2026, actor="c")
    assert first.reservation_id and second.reservation_id
    released = ledger.release(session, clock, first.reservation_id, actor="op")
    assert released.remaining == 2 and released.released == 1
    consumed = ledger.consume(session, clock, second.reservation_id, actor="op")
    assert consumed.consumed == 1 and consumed.reserved == 0 and consumed.remaining == 2
    with pytest.raises(ReservationClosed):
        ledger.release(session, clock, first.reservation_id, actor="op")
    with pytest.raises(ReservationClosed):
        ledger.consume(session, clock, second.reservation_id, actor="op")


def test_every_change_is_audited(session: Session, clock: FrozenClock) -> None:
    before = _audit_count(session)
    decision = ledger.reserve(session, clock, SMALL, 2026, actor="c")
    assert decision.reservation_id
    ledger.release(session, clock, decision.reservation_id, actor="op")
    actions = list(session.scalars(select(AuditEvent.action).where(AuditEvent.seq > before)
                                   .order_by(AuditEvent.seq)))
    assert actions == ["quota.reserved", "quota.released"]


def test_partnership_adds_extra_and_is_billed(session: Session, clock: FrozenClock) -> None:
    ledger.add_partnership(session, clock, commune_code=SMALL.code, year=2026, count=2,
                           unit_price_mad=Decimal("850.00"), signed_on=date(2026, 2, 1),
                           reference="CONV-2026-001", actor="dgcl")
    ledger.add_partnership(session, clock, commune_code=SMALL.code, year=2026, count=1,
                           unit_price_mad=Decimal("850.00"), signed_on=date(2026, 3, 1),
                           reference="CONV-2026-002", actor="dgcl")
    assert ledger.check(session, SMALL, 2026).remaining == 6
    granted = [ledger.reserve(session, clock, SMALL, 2026, actor="c") for _ in range(7)]
    assert sum(d.allowed for d in granted) == 6
    lines = ledger.billing(session, 2026)
    line = next(x for x in lines if x.commune_code == SMALL.code)
    assert line.certificates == 3
    assert line.amount_mad == Decimal("2550.00")
    assert line.references == ("CONV-2026-001", "CONV-2026-002")
    assert ledger.billing(session, 2025) == []
    report = ledger.report(session, 2026, province_code="01.051")
    row = next(x for x in report.lines if x.entity == str(SMALL))
    assert (row.allotted, row.extra) == (3, 3)  # the ministry still pays for 3 only


@pytest.mark.parametrize(("count", "price", "signed"), [
    (0, "850", date(2026, 1, 1)), (1, "0", date(2026, 1, 1)), (1, "850", date(2027, 1, 1)),
])
def test_bad_partnership_is_refused(session: Session, clock: FrozenClock, count: int,
                                    price: str, signed: date) -> None:
    with pytest.raises(InvalidPartnership):
        ledger.add_partnership(session, clock, commune_code=SMALL.code, year=2026,
                               count=count, unit_price_mad=Decimal(price), signed_on=signed,
                               reference="x", actor="dgcl")


def test_services_entity_has_its_own_quota(session: Session, clock: FrozenClock) -> None:
    services = Entity.parse("01.051")
    assert str(services) == "services:01.051"
    results = [ledger.reserve(session, clock, services, 2026, actor="c").allowed
               for _ in range(4)]
    assert results == [True, True, True, False]


def test_prepare_ledgers_makes_the_rows_reserve_would(session: Session,
                                                       clock: FrozenClock) -> None:
    big = session.scalars(select(Commune.code).where(Commune.kind == "urbaine")
                          .order_by(Commune.code).limit(1)).one()
    arrondissement = session.scalars(select(Commune.code).where(
        Commune.kind == "arrondissement").limit(1)).one()
    columns = ("policy_version", "tier", "population", "census_year", "allotted", "extra",
               "reserved", "consumed", "released")

    def rows(year: int) -> dict[str, tuple[object, ...]]:
        return {e.entity_code: tuple(getattr(e, c) for c in columns)
                for e in session.scalars(select(LedgerEntry).where(LedgerEntry.year == year))}

    # one by one, as a reservation creates them, then released to compare the snapshot
    for code in (SMALL.code, big):
        decision = ledger.reserve(session, clock, Entity.parse(code), 2031, actor="c")
        assert decision.reservation_id is not None
        ledger.release(session, clock, decision.reservation_id, actor="c")
    one_by_one = {code: row[:5] for code, row in rows(2031).items()}
    created = ledger.prepare_ledgers(session, [SMALL.code, big, big, arrondissement,
                                               "99.999"], 2032)
    assert created == 2  # neither the arrondissement nor an unknown code
    assert {code: row[:5] for code, row in rows(2032).items()} == one_by_one
    assert all(row[5:] == (0, 0, 0, 0) for row in rows(2032).values())
    assert ledger.prepare_ledgers(session, [SMALL.code, big], 2032) == 0  # already there
    assert ledger.reserve(session, clock, SMALL, 2032, actor="c").allowed

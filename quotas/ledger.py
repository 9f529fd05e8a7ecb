"""The yearly quota ledger: check, reserve, consume, release, partnerships, reports.

Never over-issue, whatever the concurrency: a reservation is one conditional UPDATE
(``reserved + consumed < allotted + extra``) that the database applies atomically, backed by a
CHECK constraint. On PostgreSQL concurrent updates of the row queue on its row lock and
re-check the condition; on SQLite every transaction begins IMMEDIATE (see core.db).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from core.audit import record
from core.clock import Clock
from core.db import dialect_insert
from quotas.errors import (
    InvalidPartnership,
    NoPolicy,
    NotAQuotaEntity,
    QuotaExhausted,
    ReservationClosed,
    ReservationNotFound,
    UnknownEntity,
)
from quotas.models import (
    ENTITY_COMMUNE,
    ENTITY_SERVICES,
    CensusPopulation,
    Commune,
    ExtraAllotment,
    LedgerEntry,
    Partnership,
    Province,
    Region,
    Reservation,
)
from quotas.policy import PolicySpec, spec_for_year


@dataclass(frozen=True)
class Entity:
    """A quota holder: a commune, or a prefecture/province's Interior services."""

    kind: str
    code: str

    def __post_init__(self) -> None:
        if self.kind not in (ENTITY_COMMUNE, ENTITY_SERVICES):
            raise NotAQuotaEntity(f"unknown entity kind {self.kind!r}")

    @classmethod
    def parse(cls, text: str) -> Entity:
        """``01.051.01.01`` or ``commune:01.051.01.01`` is a commune; ``01.051`` or
        ``services:01.051`` is that province's Interior services."""
        text = text.strip()
        if ":" in text:
            kind, _, code = text.partition(":")
            return cls(kind, code)
        parts = text.split(".")
        if len(parts) == 4 and all(p.isdigit() for p in parts):
            return cls(ENTITY_COMMUNE, text)
        if len(parts) == 2 and all(p.isdigit() for p in parts):
            return cls(ENTITY_SERVICES, text)
        raise UnknownEntity(f"{text!r} is neither a commune code (01.051.01.01) nor a "
                            "province code (01.051)", entity=text)

    def __str__(self) -> str:
        return f"{self.kind}:{self.code}"


@dataclass(frozen=True)
class Allotment:
    entity: Entity
    name_fr: str
    name_ar: str
    province_code: str
    year: int
    policy_version: int
    tier: str
    population: int | None
    census_year: int | None
    allotted: int


@dataclass(frozen=True)
class QuotaDecision:
    allowed: bool
    entity: str
    year: int
    tier: str
    allotted: int
    extra: int
    reserved: int
    consumed: int
    released: int
    remaining: int
    reason: str
    resets_on: date
    reservation_id: int | None = None

    def raise_if_denied(self) -> QuotaDecision:
        if not self.allowed:
            raise QuotaExhausted(self.reason, entity=self.entity, year=self.year,
                                 allotted=self.allotted + self.extra)
        return self

    def as_dict(self) -> dict[str, Any]:
        return {"allowed": self.allowed, "entity": self.entity, "year": self.year,
                "tier": self.tier, "allotted": self.allotted, "extra": self.extra,
                "reserved": self.reserved, "consumed": self.consumed,
                "released": self.released, "available": self.remaining,
                "reason": self.reason, "resets_on": self.resets_on.isoformat(),
                "reservation_id": self.reservation_id}


def _population(session: Session, commune_code: str, census_year: int) -> tuple[int, int]:
    """Population at the policy's census; a commune created after it (four have no 2014
    figure) falls back to the nearest census that counted it."""
    rows = session.execute(select(CensusPopulation.census_year, CensusPopulation.population)
                           .where(CensusPopulation.commune_code == commune_code)).all()
    if not rows:
        raise UnknownEntity(f"commune {commune_code} has no census figure", entity=commune_code)
    return _nearest_census([(r[0], r[1]) for r in rows], census_year)


def _nearest_census(figures: list[tuple[int, int]], census_year: int) -> tuple[int, int]:
    """(population, census year) of the ``(census year, population)`` figure nearest the
    policy's census, the later one on a tie."""
    year, population = min(figures, key=lambda r: (abs(r[0] - census_year), -r[0]))
    return population, year


def _new_ledger_row(allot: Allotment) -> dict[str, Any]:
    """A ledger row's values when it is created: the allotment's snapshot, nothing used."""
    return {"entity_kind": allot.entity.kind, "entity_code": allot.entity.code,
            "year": allot.year, "policy_version": allot.policy_version, "tier": allot.tier,
            "population": allot.population, "census_year": allot.census_year,
            "allotted": allot.allotted, "extra": 0, "reserved": 0, "consumed": 0,
            "released": 0}


def allotment(session: Session, entity: Entity, year: int,
              spec: PolicySpec | None = None) -> Allotment:
    """What the policy in force gives ``entity`` for ``year`` (no write)."""
    spec = spec or spec_for_year(session, year)
    if entity.kind == ENTITY_SERVICES:
        province = session.get(Province, entity.code)
        if province is None:
            raise UnknownEntity(f"no prefecture/province {entity.code}", entity=str(entity))
        return Allotment(entity, f"Services déconcentrés — {province.name_fr}",
                         f"المصالح اللاممركزة — {province.name_ar}", province.code, year,
                         spec.version, "services", None, None, spec.services_count)
    commune = session.get(Commune, entity.code)
    if commune is None:
        raise UnknownEntity(f"no commune {entity.code}", entity=str(entity))
    if commune.kind == "arrondissement":
        raise NotAQuotaEntity(f"{commune.name_fr} ({entity.code}) is an arrondissement: its "
                              "city's commune holds the quota", entity=str(entity))
    population, census = _population(session, commune.code, spec.census_year)
    tier = spec.tier_for(population)
    return Allotment(entity, commune.name_fr, commune.name_ar, commune.province_code, year,
                     spec.version, tier.name, population, census, tier.yearly_count)


def _ledger(session: Session, entity: Entity, year: int) -> LedgerEntry:
    """The ledger row, created on first use with the allotment snapshot. Concurrent
    creators race through INSERT … ON CONFLICT DO NOTHING, so exactly one row exists."""
    existing = session.scalar(select(LedgerEntry).where(
        LedgerEntry.entity_kind == entity.kind, LedgerEntry.entity_code == entity.code,
        LedgerEntry.year == year))
    if existing is not None:
        return existing
    allot = allotment(session, entity, year)
    insert = dialect_insert(session)
    session.execute(insert(LedgerEntry).values(**_new_ledger_row(allot))
                    .on_conflict_do_nothing())
    return session.scalars(select(LedgerEntry).where(
        LedgerEntry.entity_kind == entity.kind, LedgerEntry.entity_code == entity.code,
        LedgerEntry.year == year)).one()


def prepare_ledgers(session: Session, codes: list[str], year: int) -> int:
    """Create the missing ledger rows of these communes for ``year`` in a few set
    statements (the policy read once, the populations in one query per 500 communes), as
    :func:`_ledger` would one by one: a bulk import then finds them. A commune
    :func:`allotment` would refuse is left out (its own reservation says why). Returns how
    many were created."""
    wanted = sorted(set(codes))
    if not wanted:
        return 0
    try:
        spec = spec_for_year(session, year)
    except NoPolicy:
        return 0  # each reservation reports it
    created = 0
    for start in range(0, len(wanted), 500):
        chunk = wanted[start:start + 500]
        existing = set(session.scalars(select(LedgerEntry.entity_code).where(
            LedgerEntry.entity_kind == ENTITY_COMMUNE, LedgerEntry.entity_code.in_(chunk),
            LedgerEntry.year == year)))
        missing = [c for c in chunk if c not in existing]
        if not missing:
            continue
        communes = {c.code: c for c in session.scalars(select(Commune).where(
            Commune.code.in_(missing)))}
        figures: dict[str, list[tuple[int, int]]] = {}
        for code, census, population in session.execute(select(
                CensusPopulation.commune_code, CensusPopulation.census_year,
                CensusPopulation.population).where(
                CensusPopulation.commune_code.in_(missing))):
            figures.setdefault(code, []).append((census, population))
        values = []
        for code in missing:
            commune = communes.get(code)
            if commune is None or commune.kind == "arrondissement" or not figures.get(code):
                continue
            population, census = _nearest_census(figures[code], spec.census_year)
            tier = spec.tier_for(population)
            values.append(_new_ledger_row(Allotment(
                Entity(ENTITY_COMMUNE, code), commune.name_fr, commune.name_ar,
                commune.province_code, year, spec.version, tier.name, population, census,
                tier.yearly_count)))
        if values:
            insert = dialect_insert(session)
            session.execute(insert(LedgerEntry).values(values).on_conflict_do_nothing())
            created += len(values)
    return created


def _resets_on(year: int) -> date:
    return date(year + 1, 1, 1)


def _decision(row: LedgerEntry, allowed: bool, reason: str,
              reservation_id: int | None = None) -> QuotaDecision:
    return QuotaDecision(allowed, f"{row.entity_kind}:{row.entity_code}", row.year, row.tier,
                         row.allotted, row.extra, row.reserved, row.consumed, row.released,
                         row.available, reason, _resets_on(row.year), reservation_id)


def check(session: Session, entity: Entity, year: int) -> QuotaDecision:
    """Would a reservation succeed now? Writes nothing."""
    row = session.scalar(select(LedgerEntry).where(
        LedgerEntry.entity_kind == entity.kind, LedgerEntry.entity_code == entity.code,
        LedgerEntry.year == year))
    if row is None:
        allot = allotment(session, entity, year)
        return QuotaDecision(allot.allotted > 0, str(entity), year, allot.tier, allot.allotted,
                             0, 0, 0, 0, allot.allotted,
                             "available" if allot.allotted else "no quota for this tier",
                             _resets_on(year))
    available = row.available > 0
    return _decision(row, available, "available" if available else "quota exhausted")


def reserve(session: Session, clock: Clock, entity: Entity, year: int, *, actor: str,
            reference: str = "", free: bool = False) -> QuotaDecision:
    """Take one certificate from the entity's quota for ``year``. A refusal is a decision
    with ``allowed=False``, not an error: call ``raise_if_denied()`` to turn it into one.

    ``free``: a reservation outside the quota (a replacement token the policy does not
    charge, see :func:`replacement_is_free`): always granted, it moves no counter, and
    consuming or releasing it moves none either."""
    row = _ledger(session, entity, year)
    if free:
        now = clock.now()
        reservation = Reservation(ledger_id=row.id, status="reserved", reference=reference,
                                  free=True, created_at=now, updated_at=now)
        session.add(reservation)
        session.flush()
        record(session, clock, actor=actor, action="quota.reserved", object_type="reservation",
               object_id=reservation.id, summary={"entity": str(entity), "year": year,
                                                  "reference": reference, "free": True,
                                                  "available": row.available})
        return _decision(row, True, "reserved outside the quota", reservation.id)
    result = session.execute(
        update(LedgerEntry)
        .where(LedgerEntry.id == row.id,
               LedgerEntry.reserved + LedgerEntry.consumed < LedgerEntry.allotted
               + LedgerEntry.extra)
        .values(reserved=LedgerEntry.reserved + 1)
        .execution_options(synchronize_session=False))
    session.refresh(row)
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return _decision(row, False, f"quota exhausted: {row.allotted + row.extra} for {year}, "
                         f"{row.reserved} reserved, {row.consumed} consumed")
    now = clock.now()
    reservation = Reservation(ledger_id=row.id, status="reserved", reference=reference,
                              created_at=now, updated_at=now)
    session.add(reservation)
    session.flush()
    record(session, clock, actor=actor, action="quota.reserved", object_type="reservation",
           object_id=reservation.id, summary={"entity": str(entity), "year": year,
                                              "reference": reference,
                                              "available": row.available})
    return _decision(row, True, "reserved", reservation.id)


def _close(session: Session, clock: Clock, reservation_id: int, new_status: str,
           actor: str) -> QuotaDecision:
    reservation = session.get(Reservation, reservation_id)
    if reservation is None:
        raise ReservationNotFound(f"no reservation {reservation_id}",
                                  reservation_id=reservation_id)
    # Conditional on the current status, so a double consume/release cannot count twice.
    closed = session.execute(
        update(Reservation)
        .where(Reservation.id == reservation_id, Reservation.status == "reserved")
        .values(status=new_status, updated_at=clock.now())
        .execution_options(synchronize_session=False))
    if closed.rowcount != 1:  # type: ignore[attr-defined]
        session.refresh(reservation)
        raise ReservationClosed(f"reservation {reservation_id} is already {reservation.status}",
                                reservation_id=reservation_id, status=reservation.status)
    session.refresh(reservation)
    if not reservation.free:
        moved = {"consumed": {"consumed": LedgerEntry.consumed + 1},
                 "released": {"released": LedgerEntry.released + 1}}[new_status]
        session.execute(update(LedgerEntry).where(LedgerEntry.id == reservation.ledger_id)
                        .values(reserved=LedgerEntry.reserved - 1, **moved)
                        .execution_options(synchronize_session=False))
    row = session.get_one(LedgerEntry, reservation.ledger_id)
    session.refresh(row)
    record(session, clock, actor=actor, action=f"quota.{new_status}",
           object_type="reservation", object_id=reservation_id,
           summary={"entity": f"{row.entity_kind}:{row.entity_code}", "year": row.year,
                    "available": row.available})
    return _decision(row, True, new_status, reservation_id)


def replacement_is_free(session: Session, year: int) -> bool:
    """Whether the quota policy of ``year`` lets a replacement token go outside the quota."""
    return not spec_for_year(session, year).replacement_consumes_quota


def consume(session: Session, clock: Clock, reservation_id: int, *,
            actor: str) -> QuotaDecision:
    """The reserved certificate was issued and activated: it now counts as used."""
    return _close(session, clock, reservation_id, "consumed", actor)


def release(session: Session, clock: Clock, reservation_id: int, *,
            actor: str) -> QuotaDecision:
    """The request was rejected or cancelled: give the certificate back to the quota."""
    return _close(session, clock, reservation_id, "released", actor)


def add_partnership(session: Session, clock: Clock, *, commune_code: str, year: int,
                    count: int, unit_price_mad: Decimal, signed_on: date, reference: str,
                    actor: str) -> Partnership:
    """Extra certificates bought by the commune itself; billed to it, not to the ministry."""
    if count <= 0:
        raise InvalidPartnership("a partnership adds at least one certificate")
    if unit_price_mad <= 0:
        raise InvalidPartnership("the unit price must be positive")
    if signed_on.year > year:
        raise InvalidPartnership("a partnership signed after the year it covers")
    unit_price_mad = unit_price_mad.quantize(Decimal("0.01"))
    entity = Entity(ENTITY_COMMUNE, commune_code)
    row = _ledger(session, entity, year)
    partnership = Partnership(commune_code=commune_code, year=year, count=count,
                              unit_price_mad=unit_price_mad, signed_on=signed_on,
                              reference=reference)
    session.add(partnership)
    session.execute(update(LedgerEntry).where(LedgerEntry.id == row.id)
                    .values(extra=LedgerEntry.extra + count)
                    .execution_options(synchronize_session=False))
    session.flush()
    session.refresh(row)
    record(session, clock, actor=actor, action="quota.partnership.added",
           object_type="partnership", object_id=partnership.id,
           summary={"commune": commune_code, "year": year, "count": count,
                    "unit_price_mad": str(unit_price_mad), "signed_on": signed_on.isoformat(),
                    "reference": reference})
    return partnership


def add_extra_allotment(session: Session, clock: Clock, entity: Entity, year: int, *,
                        count: int, billed_to: str, reference: str,
                        actor: str) -> ExtraAllotment:
    """Add ``count`` certificates to the entity's year, paid by ``billed_to`` (e.g. the DGCL
    for an election campaign's replacements). Idempotent on ``reference``: the same
    reference given again adds nothing and returns the first row."""
    if count <= 0:
        raise InvalidPartnership("an extra allotment adds at least one certificate")
    existing = session.scalar(select(ExtraAllotment).where(
        ExtraAllotment.reference == reference))
    if existing is not None:
        return existing
    row = _ledger(session, entity, year)
    extra = ExtraAllotment(entity_kind=entity.kind, entity_code=entity.code, year=year,
                           count=count, billed_to=billed_to, reference=reference,
                           created_at=clock.now())
    session.add(extra)
    session.execute(update(LedgerEntry).where(LedgerEntry.id == row.id)
                    .values(extra=LedgerEntry.extra + count)
                    .execution_options(synchronize_session=False))
    session.flush()
    session.refresh(row)
    record(session, clock, actor=actor, action="quota.extra.added",
           object_type="extra_allotment", object_id=extra.id,
           summary={"entity": str(entity), "year": year, "count": count,
                    "billed_to": billed_to, "reference": reference})
    return extra


def extra_allotments(session: Session, year: int, *,
                     billed_to: str | None = None) -> list[ExtraAllotment]:
    """The year's extra allotments (what the DGCL is billed for a campaign, say)."""
    query = select(ExtraAllotment).where(ExtraAllotment.year == year)
    if billed_to is not None:
        query = query.where(ExtraAllotment.billed_to == billed_to)
    return list(session.scalars(query.order_by(ExtraAllotment.id)))


@dataclass(frozen=True)
class BillingLine:
    commune_code: str
    commune_name_fr: str
    province_code: str
    certificates: int
    unit_price_mad: Decimal
    amount_mad: Decimal
    references: tuple[str, ...]


def billing(session: Session, year: int) -> list[BillingLine]:
    """Who owes what for ``year``: one line per commune and unit price."""
    rows = session.execute(
        select(Partnership, Commune).join(Commune, Commune.code == Partnership.commune_code)
        .where(Partnership.year == year).order_by(Partnership.commune_code, Partnership.id)
    ).all()
    grouped: dict[tuple[str, Decimal], list[tuple[Partnership, Commune]]] = {}
    for partnership, commune in rows:
        grouped.setdefault((commune.code, partnership.unit_price_mad), []).append(
            (partnership, commune))
    lines = []
    for (code, price), items in grouped.items():
        count = sum(p.count for p, _ in items)
        commune = items[0][1]
        lines.append(BillingLine(code, commune.name_fr, commune.province_code, count, price,
                                 price * count, tuple(p.reference for p, _ in items)))
    return lines


@dataclass(frozen=True)
class ReportLine:
    entity: str
    name_fr: str
    name_ar: str
    region_code: str
    province_code: str
    tier: str
    population: int | None
    allotted: int
    extra: int
    reserved: int
    consumed: int
    available: int


@dataclass(frozen=True)
class QuotaReport:
    year: int
    policy_version: int
    census_year: int
    lines: list[ReportLine]
    tier_counts: dict[str, int] = field(default_factory=dict)

    @property
    def totals(self) -> dict[str, int]:
        return {key: sum(getattr(line, key) for line in self.lines)
                for key in ("allotted", "extra", "reserved", "consumed", "available")}


def report(session: Session, year: int, *, region_code: str | None = None,
           province_code: str | None = None) -> QuotaReport:
    """Per-entity quota use with totals. Entities whose ledger row does not exist yet show
    what the policy in force would allot them. Arrondissements are never counted."""
    spec = spec_for_year(session, year)
    if region_code and session.get(Region, region_code) is None:
        raise UnknownEntity(f"no region {region_code}", entity=region_code)
    if province_code and session.get(Province, province_code) is None:
        raise UnknownEntity(f"no prefecture/province {province_code}", entity=province_code)
    province_query = select(Province).order_by(Province.code)
    if region_code:
        province_query = province_query.where(Province.region_code == region_code)
    if province_code:
        province_query = province_query.where(Province.code == province_code)
    provinces = {p.code: p for p in session.scalars(province_query)}
    communes = list(session.scalars(select(Commune).where(
        Commune.province_code.in_(provinces), Commune.kind != "arrondissement")
        .order_by(Commune.code)))
    populations: dict[str, dict[int, int]] = {}
    for code, census, population in session.execute(
            select(CensusPopulation.commune_code, CensusPopulation.census_year,
                   CensusPopulation.population)
            .where(CensusPopulation.commune_code.in_([c.code for c in communes]))):
        populations.setdefault(code, {})[census] = population
    ledger = {(r.entity_kind, r.entity_code): r for r in session.scalars(
        select(LedgerEntry).where(LedgerEntry.year == year))}
    lines: list[ReportLine] = []
    tiers: Counter[str] = Counter()

    def line(entity: Entity, name_fr: str, name_ar: str, province: Province, tier: str,
             population: int | None, allotted: int) -> ReportLine:
        row = ledger.get((entity.kind, entity.code))
        if row is not None:
            tier, population, allotted = row.tier, row.population, row.allotted
        extra = row.extra if row else 0
        reserved = row.reserved if row else 0
        consumed = row.consumed if row else 0
        return ReportLine(str(entity), name_fr, name_ar, province.region_code, province.code,
                          tier, population, allotted, extra, reserved, consumed,
                          allotted + extra - reserved - consumed)

    for commune in communes:
        figures = populations.get(commune.code, {})
        if not figures:
            continue
        nearest = min(figures, key=lambda y: (abs(y - spec.census_year), -y))
        population = figures[nearest]
        tier = spec.tier_for(population)
        entry = line(Entity(ENTITY_COMMUNE, commune.code), commune.name_fr, commune.name_ar,
                     provinces[commune.province_code], tier.name, population,
                     tier.yearly_count)
        tiers[entry.tier] += 1
        lines.append(entry)
    for province in provinces.values():
        lines.append(line(Entity(ENTITY_SERVICES, province.code),
                          f"Services déconcentrés — {province.name_fr}",
                          f"المصالح اللاممركزة — {province.name_ar}", province, "services",
                          None, spec.services_count))
    return QuotaReport(year, spec.version, spec.census_year, lines, dict(tiers))


def reservation_count(session: Session, status: str | None = None) -> int:
    query = select(func.count(Reservation.id))
    if status:
        query = query.where(Reservation.status == status)
    return int(session.scalar(query) or 0)

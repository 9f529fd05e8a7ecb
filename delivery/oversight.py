"""Oversight: the figures the regional, provincial and national dashboards show (DESIGN
§3.6), and the lists the people's pages read.

Read-only functions taking a Session, a Clock and plain values, returning frozen
dataclasses. The territory is summed at three levels: the regions of the country, the
provinces of a region, the communes of a province (arrondissements never count: their
city's commune holds the certificates).

*A commune can sign* when one of its holders has an active credential whose certificate is
neither revoked nor suspended nor expired. A commune that cannot sign either **lost** that
ability (since the moment its last certificate was revoked, suspended or expired, e.g. the
outgoing president's certificate revoked after an election) or **never** had it. The lead
time of a request runs from its submission to its activation.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session, aliased

from core.clock import Clock, as_utc
from delivery.errors import HolderNotFound
from delivery.models import (
    ACTIVE,
    APPROVED,
    BATCH_DISPATCHED,
    DELIVERED,
    DEVICE,
    HANDED_OVER,
    OPEN_STATES,
    PERSONALISED,
    SHIPPED,
    SUBMITTED,
    CertificateRequest,
    CourierBatch,
    Holder,
    RequestEvent,
)
from pki.models import STATUS_ISSUED, STATUS_REVOKED, STATUS_SUSPENDED, CertificateRecord
from quotas.errors import UnknownEntity
from quotas.models import Commune, Province, Region
from quotas.oversight import QuotaFigures, quota_by_area

REGION, PROVINCE, COMMUNE = "region", "province", "commune"

#: What a certificate looks like to a relying party now.
CERT_VALID, CERT_SUSPENDED, CERT_REVOKED, CERT_EXPIRED = "valid", "suspended", "revoked", \
    "expired"


# --------------------------------------------------------------------------- territory


@dataclass(frozen=True)
class Area:
    level: str  # region | province | commune
    code: str
    name_fr: str
    name_ar: str
    parent_code: str | None = None


@dataclass(frozen=True)
class _Territory:
    """The communes in scope, and how each rolls up to the level shown."""

    level: str
    areas: dict[str, Area]
    communes: dict[str, Commune]
    province_region: dict[str, str]
    provinces: dict[str, Province]

    def key(self, province_code: str, commune_code: str | None) -> str | None:
        """The area a (province, commune) pair counts in, or None if out of scope."""
        if self.level == REGION:
            return self.province_region.get(province_code)
        if self.level == PROVINCE:
            return province_code if province_code in self.areas else None
        return commune_code if commune_code in self.areas else None


def _territory(session: Session, region_code: str | None,
               province_code: str | None) -> _Territory:
    if province_code:
        province = session.get(Province, province_code)
        if province is None:
            raise UnknownEntity(f"no prefecture/province {province_code}",
                                entity=province_code)
        provinces = {province.code: province}
    elif region_code:
        if session.get(Region, region_code) is None:
            raise UnknownEntity(f"no region {region_code}", entity=region_code)
        provinces = {p.code: p for p in session.scalars(
            select(Province).where(Province.region_code == region_code))}
    else:
        provinces = {p.code: p for p in session.scalars(select(Province))}
    communes = {c.code: c for c in session.scalars(
        select(Commune).where(Commune.province_code.in_(provinces),
                              Commune.kind != "arrondissement").order_by(Commune.code))}
    areas: dict[str, Area]
    if province_code:
        level = COMMUNE
        areas = {c.code: Area(COMMUNE, c.code, c.name_fr, c.name_ar, c.province_code)
                 for c in communes.values()}
    elif region_code:
        level = PROVINCE
        areas = {p.code: Area(PROVINCE, p.code, p.name_fr, p.name_ar, p.region_code)
                 for p in sorted(provinces.values(), key=lambda p: p.code)}
    else:
        level = REGION
        areas = {r.code: Area(REGION, r.code, r.name_fr, r.name_ar)
                 for r in session.scalars(select(Region).order_by(Region.code))}
    return _Territory(level, areas, communes,
                      {p.code: p.region_code for p in provinces.values()}, provinces)


def _in_provinces(query: Select, column: object, territory: _Territory) -> Select:
    return query.where(column.in_(list(territory.provinces)))  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- certificates


def certificate_state(status: str | None, not_after: datetime | None,
                      now: datetime) -> str:
    """``valid``, ``suspended``, ``revoked`` or ``expired``. A credential whose certificate
    row is unknown here counts as issued until ``not_after``."""
    if status == STATUS_REVOKED:
        return CERT_REVOKED
    if status == STATUS_SUSPENDED:
        return CERT_SUSPENDED
    if not_after is not None and as_utc(not_after) <= now:
        return CERT_EXPIRED
    if status in (None, STATUS_ISSUED):
        return CERT_VALID
    return CERT_REVOKED  # prepared or abandoned: never a usable certificate


def _ended_at(status: str | None, revoked_at: datetime | None, suspended_at: datetime | None,
              not_after: datetime | None) -> datetime | None:
    if status == STATUS_REVOKED and revoked_at is not None:
        return as_utc(revoked_at)
    if status == STATUS_SUSPENDED and suspended_at is not None:
        return as_utc(suspended_at)
    return as_utc(not_after) if not_after is not None else None


def _active_credentials(session: Session, territory: _Territory
                        ) -> list[tuple[str, str, str | None, datetime | None, datetime | None,
                                        datetime | None]]:
    """(commune, province, certificate status, not_after, revoked_at, suspended_at) of every
    credential that was activated for a commune of the territory."""
    query = (select(Holder.commune_code, Holder.province_code, CertificateRecord.status,
                    func.coalesce(CertificateRecord.not_after,
                                  CertificateRequest.certificate_not_after),
                    CertificateRecord.revoked_at, CertificateRecord.suspended_at)
             .select_from(CertificateRequest)
             .join(Holder, Holder.id == CertificateRequest.holder_id)
             .outerjoin(CertificateRecord,
                        CertificateRecord.serial == CertificateRequest.certificate_serial)
             .where(CertificateRequest.status == ACTIVE, Holder.commune_code.is_not(None)))
    rows = session.execute(_in_provinces(query, Holder.province_code, territory)).all()
    return [(r[0], r[1], r[2], r[3], r[4], r[5]) for r in rows]


@dataclass(frozen=True)
class Blockage:
    """A commune that cannot sign: since when (None: it never could) and for how long."""

    commune_code: str
    name_fr: str
    name_ar: str
    province_code: str
    province_name_fr: str
    province_name_ar: str
    since: datetime | None
    days: int | None

    @property
    def never(self) -> bool:
        return self.since is None


def _signing_state(session: Session, clock: Clock, territory: _Territory
                   ) -> tuple[set[str], dict[str, datetime]]:
    """The communes able to sign now, and for the others that once could, the moment
    their last certificate stopped being usable."""
    now = clock.now()
    able: set[str] = set()
    ended: dict[str, datetime] = {}
    for commune, _, status, not_after, revoked_at, suspended_at in \
            _active_credentials(session, territory):
        if certificate_state(status, not_after, now) == CERT_VALID:
            able.add(commune)
            continue
        end = _ended_at(status, revoked_at, suspended_at, not_after)
        if end is not None and (commune not in ended or end > ended[commune]):
            ended[commune] = end
    return able, {c: at for c, at in ended.items() if c not in able}


def blockages(session: Session, clock: Clock, *, region_code: str | None = None,
              province_code: str | None = None) -> list[Blockage]:
    """Communes of the country (or of a region, or of a province) with no active signing
    certificate: those that lost it first, the longest without first; then those that never
    had one, by code."""
    territory = _territory(session, region_code, province_code)
    able, ended = _signing_state(session, clock, territory)
    now = clock.now()
    found: list[Blockage] = []
    for code, commune in territory.communes.items():
        if code in able:
            continue
        province = territory.provinces[commune.province_code]
        since = ended.get(code)
        found.append(Blockage(code, commune.name_fr, commune.name_ar, province.code,
                              province.name_fr, province.name_ar, since,
                              (now - since).days if since else None))
    return sorted(found, key=lambda b: (b.since is None, b.since or now, b.commune_code))


# --------------------------------------------------------------------------- dashboards


@dataclass(frozen=True)
class AreaFigures:
    """Everything a dashboard row shows for one region, province or commune."""

    area: Area
    communes: int
    communes_able: int
    waiting: dict[str, int]  # open requests per state
    batches_in_transit: int
    tokens_in_transit: int
    overdue_handovers: int
    lost: int  # communes that could sign and no longer can
    never: int  # communes that never could
    longest_days: int | None  # the longest a commune has been without, having had one
    median_lead_days: float | None  # submission to activation, over activated requests
    quota: QuotaFigures

    @property
    def without(self) -> int:
        return self.communes - self.communes_able

    @property
    def able_share(self) -> float:
        return self.communes_able / self.communes if self.communes else 0.0

    @property
    def waiting_total(self) -> int:
        return sum(self.waiting.values())


@dataclass
class _Tally:
    communes: int = 0
    able: int = 0
    waiting: dict[str, int] = field(default_factory=dict)
    batches: int = 0
    tokens: int = 0
    overdue: int = 0
    lost: int = 0
    never: int = 0
    longest: int | None = None
    leads: list[float] = field(default_factory=list)


def _lead_days(session: Session, territory: _Territory
               ) -> list[tuple[str, str | None, float]]:
    """(province, commune, days from submission to activation) of activated requests."""
    query = (select(Holder.province_code, Holder.commune_code,
                    CertificateRequest.submitted_at, func.max(RequestEvent.at))
             .select_from(CertificateRequest)
             .join(Holder, Holder.id == CertificateRequest.holder_id)
             .join(RequestEvent, RequestEvent.request_id == CertificateRequest.id)
             .where(CertificateRequest.status == ACTIVE, RequestEvent.to_status == ACTIVE)
             .group_by(CertificateRequest.id, Holder.province_code, Holder.commune_code,
                       CertificateRequest.submitted_at))
    return [(p, c, (as_utc(done) - as_utc(submitted)) / timedelta(days=1))
            for p, c, submitted, done in session.execute(
                _in_provinces(query, Holder.province_code, territory))]


def areas(session: Session, clock: Clock, *, year: int, overdue_days: int,
          region_code: str | None = None, province_code: str | None = None
          ) -> list[AreaFigures]:
    """One row per region of the country, per province of ``region_code`` or per commune
    of ``province_code``, in code order. Requests and quota of a province's Interior
    services count in its province and region, not in any commune."""
    territory = _territory(session, region_code, province_code)
    now = clock.now()
    tallies = {code: _Tally() for code in territory.areas}

    def tally(province: str, commune: str | None) -> _Tally | None:
        key = territory.key(province, commune)
        return tallies.get(key) if key is not None else None

    able, ended = _signing_state(session, clock, territory)
    for code, commune in territory.communes.items():
        one = tally(commune.province_code, code)
        if one is None:
            continue
        one.communes += 1
        if code in able:
            one.able += 1
        elif code in ended:
            one.lost += 1
            days = (now - ended[code]).days
            one.longest = days if one.longest is None else max(one.longest, days)
        else:
            one.never += 1
    waiting = (select(Holder.province_code, Holder.commune_code, CertificateRequest.status,
                      func.count(CertificateRequest.id))
               .select_from(CertificateRequest)
               .join(Holder, Holder.id == CertificateRequest.holder_id)
               .where(CertificateRequest.status.in_(OPEN_STATES))
               .group_by(Holder.province_code, Holder.commune_code, CertificateRequest.status))
    for province, commune, status, count in session.execute(
            _in_provinces(waiting, Holder.province_code, territory)):
        one = tally(province, commune)
        if one is not None:
            one.waiting[status] = one.waiting.get(status, 0) + int(count)
            if status == SHIPPED:
                one.tokens += int(count)
    if territory.level != COMMUNE:
        in_transit = (select(CourierBatch.province_code, func.count(CourierBatch.id))
                      .where(CourierBatch.status == BATCH_DISPATCHED)
                      .group_by(CourierBatch.province_code))
        for province, count in session.execute(
                _in_provinces(in_transit, CourierBatch.province_code, territory)):
            one = tally(province, None)
            if one is not None:
                one.batches += int(count)
    overdue = (select(Holder.province_code, Holder.commune_code,
                      func.count(CertificateRequest.id))
               .select_from(CertificateRequest)
               .join(Holder, Holder.id == CertificateRequest.holder_id)
               .join(CourierBatch, CourierBatch.id == CertificateRequest.batch_id)
               .where(CertificateRequest.status == DELIVERED,
                      CourierBatch.received_at < now - timedelta(days=overdue_days))
               .group_by(Holder.province_code, Holder.commune_code))
    for province, commune, count in session.execute(
            _in_provinces(overdue, Holder.province_code, territory)):
        one = tally(province, commune)
        if one is not None:
            one.overdue += int(count)
    for lead_province, lead_commune, lead in _lead_days(session, territory):
        one = tally(lead_province, lead_commune)
        if one is not None:
            one.leads.append(lead)
    quotas = quota_by_area(session, year, region_code=region_code,
                           province_code=province_code)
    return [AreaFigures(area, t.communes, t.able, dict(t.waiting), t.batches, t.tokens,
                        t.overdue, t.lost, t.never, t.longest,
                        round(statistics.median(t.leads), 1) if t.leads else None,
                        quotas.get(code, QuotaFigures(code)))
            for code, area in territory.areas.items()
            for t in (tallies[code],)]


def province_figures(session: Session, clock: Clock, province_code: str, *, year: int,
                     overdue_days: int) -> AreaFigures:
    """One province's own row (batches in transit and its lead time included, which the
    sum of its communes' rows cannot give)."""
    province = session.get(Province, province_code)
    if province is None:
        raise UnknownEntity(f"no prefecture/province {province_code}", entity=province_code)
    rows = areas(session, clock, year=year, overdue_days=overdue_days,
                 region_code=province.region_code)
    return next(row for row in rows if row.area.code == province_code)


def rank(figures: Iterable[AreaFigures]) -> list[AreaFigures]:
    """Best first: the largest share of communes able to sign, then the shortest median
    lead time (areas without an activated request last), then the code."""
    return sorted(figures, key=lambda f: (-f.able_share, f.median_lead_days is None,
                                          f.median_lead_days or 0.0, f.area.code))


def total(figures: list[AreaFigures], area: Area) -> AreaFigures:
    """The sum of several areas (the country from its regions). The median lead time of a
    sum is not the sum of medians: it is left to the caller's own figures (None here)."""
    waiting: dict[str, int] = {}
    quota = QuotaFigures(area.code)
    for f in figures:
        for status, count in f.waiting.items():
            waiting[status] = waiting.get(status, 0) + count
        quota = QuotaFigures(area.code, quota.allotted + f.quota.allotted,
                             quota.extra + f.quota.extra, quota.reserved + f.quota.reserved,
                             quota.consumed + f.quota.consumed,
                             quota.available + f.quota.available)
    longest = [f.longest_days for f in figures if f.longest_days is not None]
    return AreaFigures(area, sum(f.communes for f in figures),
                       sum(f.communes_able for f in figures), waiting,
                       sum(f.batches_in_transit for f in figures),
                       sum(f.tokens_in_transit for f in figures),
                       sum(f.overdue_handovers for f in figures),
                       sum(f.lost for f in figures), sum(f.never for f in figures),
                       max(longest) if longest else None, None, quota)


# --------------------------------------------------------------------------- lists


@dataclass(frozen=True)
class RequestLine:
    """A request as a page lists it: who, where, which state, how old."""

    id: int
    status: str
    token_form: str
    holder_id: int
    cin: str
    holder_name_fr: str
    holder_name_ar: str
    province_code: str
    province_name_fr: str
    province_name_ar: str
    commune_code: str | None
    commune_name_fr: str | None
    commune_name_ar: str | None
    submitted_at: datetime
    age_days: int  # since submission
    idle_days: int  # since the last step
    batch_id: int | None


def _request_lines(session: Session, clock: Clock, query: Select) -> list[RequestLine]:
    now = clock.now()
    rows = session.execute(query).all()
    found = []
    for request, holder, province, commune in rows:
        submitted = as_utc(request.submitted_at)
        found.append(RequestLine(
            request.id, request.status, request.token_form, holder.id, holder.cin,
            f"{holder.given_name_fr} {holder.surname_fr}",
            f"{holder.given_name_ar} {holder.surname_ar}", province.code, province.name_fr,
            province.name_ar, commune.code if commune else None,
            commune.name_fr if commune else None, commune.name_ar if commune else None,
            submitted, (now - submitted).days, (now - as_utc(request.updated_at)).days,
            request.batch_id))
    return found


def _request_query() -> Select:
    return (select(CertificateRequest, Holder, Province, Commune)
            .select_from(CertificateRequest)
            .join(Holder, Holder.id == CertificateRequest.holder_id)
            .join(Province, Province.code == CertificateRequest.province_code)
            .outerjoin(Commune, Commune.code == Holder.commune_code))


def province_requests(session: Session, clock: Clock, province_code: str, *,
                      open_only: bool = False, limit: int = 500) -> list[RequestLine]:
    """A province's requests (under way only, with ``open_only``), the oldest first."""
    query = _request_query().where(CertificateRequest.province_code == province_code)
    if open_only:
        query = query.where(CertificateRequest.status.in_(OPEN_STATES))
    return _request_lines(session, clock, query.order_by(CertificateRequest.submitted_at,
                                                         CertificateRequest.id).limit(limit))


#: The operator's work, in the order it comes: approve, personalise, ship.
QUEUE_STAGES = (SUBMITTED, APPROVED, PERSONALISED)


def operator_queue(session: Session, clock: Clock, *, limit: int = 200
                   ) -> dict[str, list[RequestLine]]:
    """Requests waiting for the provider: approval (submitted), personalisation (approved),
    shipping (personalised device tokens), each the oldest first."""
    found: dict[str, list[RequestLine]] = {}
    for stage in QUEUE_STAGES:
        query = _request_query().where(CertificateRequest.status == stage)
        if stage == PERSONALISED:
            query = query.where(CertificateRequest.token_form == DEVICE)
        found[stage] = _request_lines(session, clock, query.order_by(
            CertificateRequest.updated_at, CertificateRequest.id).limit(limit))
    return found


@dataclass(frozen=True)
class HolderLine:
    id: int
    cin: str
    name_fr: str
    name_ar: str
    role: str
    commune_code: str | None
    commune_name_fr: str | None
    commune_name_ar: str | None
    request_id: int | None  # the newest request
    request_status: str | None
    certificate: str | None  # certificate_state of an activated credential
    not_after: datetime | None
    civility: str = "mr"  # titles agree with it (delivery.titles.title_for)


def province_holders(session: Session, clock: Clock, province_code: str, *,
                     limit: int = 500) -> list[HolderLine]:
    """A province's holders by commune, each with their newest request and the state of
    its certificate once activated."""
    now = clock.now()
    inner = aliased(CertificateRequest)
    newest = (select(func.max(inner.id)).where(inner.holder_id == Holder.id)
              .correlate(Holder).scalar_subquery())
    rows = session.execute(
        select(Holder, Commune, CertificateRequest, CertificateRecord.status,
               CertificateRecord.not_after)
        .select_from(Holder)
        .outerjoin(Commune, Commune.code == Holder.commune_code)
        .outerjoin(CertificateRequest, CertificateRequest.id == newest)
        .outerjoin(CertificateRecord,
                   CertificateRecord.serial == CertificateRequest.certificate_serial)
        .where(Holder.province_code == province_code)
        .order_by(Holder.commune_code, Holder.id).limit(limit)).all()
    found = []
    for holder, commune, request, cert_status, cert_not_after in rows:
        not_after = cert_not_after or (request.certificate_not_after if request else None)
        state = certificate_state(cert_status, not_after, now) \
            if request is not None and request.status == ACTIVE else None
        found.append(HolderLine(
            holder.id, holder.cin, f"{holder.given_name_fr} {holder.surname_fr}",
            f"{holder.given_name_ar} {holder.surname_ar}", holder.role,
            commune.code if commune else None, commune.name_fr if commune else None,
            commune.name_ar if commune else None, request.id if request else None,
            request.status if request else None, state,
            as_utc(not_after) if not_after else None, holder.civility))
    return found


@dataclass(frozen=True)
class BatchLine:
    id: int
    status: str
    courier: str
    tracking_number: str | None
    prepared_at: datetime
    dispatched_at: datetime | None
    received_at: datetime | None
    tokens: int
    handed_over: int
    overdue: int  # received more than the overdue delay ago and not handed over
    days_in_transit: int | None  # dispatched and not received yet


def province_batches(session: Session, clock: Clock, province_code: str, *,
                     overdue_days: int, limit: int = 100) -> list[BatchLine]:
    """A province's courier batches, the newest first, with their tokens' progress."""
    now = clock.now()
    batches = list(session.scalars(select(CourierBatch)
                                   .where(CourierBatch.province_code == province_code)
                                   .order_by(CourierBatch.id.desc()).limit(limit)))
    counts: dict[int, dict[str, int]] = {b.id: {} for b in batches}
    if batches:
        for batch_id, status, count in session.execute(
                select(CertificateRequest.batch_id, CertificateRequest.status,
                       func.count(CertificateRequest.id))
                .where(CertificateRequest.batch_id.in_(list(counts)))
                .group_by(CertificateRequest.batch_id, CertificateRequest.status)):
            if batch_id is not None:
                counts[batch_id][status] = int(count)
    found = []
    for b in batches:
        by_status = counts[b.id]
        received = as_utc(b.received_at) if b.received_at else None
        late = received is not None and received < now - timedelta(days=overdue_days)
        found.append(BatchLine(
            b.id, b.status, b.courier, b.tracking_number, as_utc(b.prepared_at),
            as_utc(b.dispatched_at) if b.dispatched_at else None, received,
            sum(by_status.values()),
            sum(by_status.get(s, 0) for s in (HANDED_OVER, ACTIVE)),
            by_status.get(DELIVERED, 0) if late else 0,
            (now - as_utc(b.dispatched_at)).days
            if b.status == BATCH_DISPATCHED and b.dispatched_at else None))
    return found


@dataclass(frozen=True)
class CredentialLine:
    """One of a holder's requests as the holder sees it."""

    request_id: int
    status: str
    token_form: str
    certificate_serial: str | None
    certificate: str | None  # certificate_state, once active
    not_after: datetime | None
    days_left: int | None
    terms_version: str | None
    terms_accepted_at: datetime | None
    pin_change_required: bool
    may_accept_terms: bool  # the token is in hand and the terms in force are not accepted


def holder_credentials(session: Session, clock: Clock, holder_id: int, *,
                       terms_version: str) -> list[CredentialLine]:
    """A holder's requests, the newest first, with their certificates' state."""
    if session.get(Holder, holder_id) is None:
        raise HolderNotFound(f"no holder {holder_id}", holder_id=holder_id)
    now = clock.now()
    rows = session.execute(
        select(CertificateRequest, CertificateRecord.status, CertificateRecord.not_after)
        .select_from(CertificateRequest)
        .outerjoin(CertificateRecord,
                   CertificateRecord.serial == CertificateRequest.certificate_serial)
        .where(CertificateRequest.holder_id == holder_id)
        .order_by(CertificateRequest.id.desc())).all()
    found = []
    for request, cert_status, cert_not_after in rows:
        not_after = cert_not_after or request.certificate_not_after
        state = certificate_state(cert_status, not_after, now) \
            if request.status == ACTIVE else None
        found.append(CredentialLine(
            request.id, request.status, request.token_form, request.certificate_serial,
            state, as_utc(not_after) if not_after else None,
            (as_utc(not_after) - now).days if not_after else None, request.terms_version,
            as_utc(request.terms_accepted_at) if request.terms_accepted_at else None,
            request.pin_change_required,
            request.status in (HANDED_OVER, ACTIVE) and request.terms_version != terms_version))
    return found



# ------------------------------------------------------------------------------ expiring

#: The horizon operators and the DGCL watch for certificates about to expire.
EXPIRY_HORIZON_DAYS = 90


@dataclass(frozen=True)
class ExpiringCertificate:
    serial: str
    not_after: datetime
    days_left: int
    holder_id: int
    cin: str
    name_fr: str
    name_ar: str
    commune_code: str | None
    request_id: int
    renewal_under_way: bool


@dataclass(frozen=True)
class ExpiringProvince:
    province_code: str
    name_fr: str
    name_ar: str
    certificates: list[ExpiringCertificate]

    @property
    def count(self) -> int:
        return len(self.certificates)


def expiring(session: Session, clock: Clock, *, days: int = EXPIRY_HORIZON_DAYS,
             province_code: str | None = None) -> list[ExpiringProvince]:
    """The holders' current certificates (active credential, certificate issued) whose
    ``notAfter`` falls within the next ``days`` days, by province (most first), soonest
    first within a province. ``renewal_under_way``: a renewal request is open."""
    now = as_utc(clock.now())
    renewal = aliased(CertificateRequest)
    query = (select(CertificateRequest.id, CertificateRecord.serial,
                    CertificateRecord.not_after, Holder, Province.name_fr, Province.name_ar,
                    select(func.count()).select_from(renewal)
                    .where(renewal.follows_request_id == CertificateRequest.id,
                           renewal.status.in_(OPEN_STATES))
                    .scalar_subquery())
             .select_from(CertificateRequest)
             .join(CertificateRecord,
                   CertificateRecord.serial == CertificateRequest.certificate_serial)
             .join(Holder, Holder.id == CertificateRequest.holder_id)
             .join(Province, Province.code == Holder.province_code)
             .where(CertificateRequest.status == ACTIVE,
                    CertificateRequest.token_label.is_not(None),
                    CertificateRecord.status == STATUS_ISSUED,
                    CertificateRecord.not_after > now,
                    CertificateRecord.not_after <= now + timedelta(days=days))
             .order_by(CertificateRecord.not_after))
    if province_code:
        query = query.where(Holder.province_code == province_code)
    provinces: dict[str, ExpiringProvince] = {}
    for request_id, serial, not_after, holder, name_fr, name_ar, renewals in \
            session.execute(query).all():
        end = as_utc(not_after)
        area = provinces.setdefault(holder.province_code, ExpiringProvince(
            holder.province_code, name_fr, name_ar, []))
        area.certificates.append(ExpiringCertificate(
            serial, end, (end - now).days, holder.id, holder.cin,
            f"{holder.given_name_fr} {holder.surname_fr}",
            f"{holder.given_name_ar} {holder.surname_ar}", holder.commune_code, request_id,
            bool(renewals)))
    return sorted(provinces.values(), key=lambda p: (-p.count, p.province_code))

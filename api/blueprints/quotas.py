"""Reference data (regions, provinces, communes) and yearly quotas."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Literal

from api.errors import CommuneNotFound
from api.policy import Scope, merge_filter
from api.routing import ApiBlueprint, Call
from api.schema import PageQuery, make_page, page_of, rule
from quotas import ledger, policy, queries

bp = ApiBlueprint("quotas", __name__, url_prefix="/v1", tag="Quotas",
                  description="The territory, census figures, quota policies, the yearly "
                              "ledger, partnerships and billing.")

REGION = r"^[0-9]{2}$"
PROVINCE = r"^[0-9]{2}\.[0-9]{3}$"
COMMUNE = r"^[0-9]{2}\.[0-9]{3}\.[0-9]{2}\.[0-9]{2}$"
YEAR = {"minimum": 2000, "maximum": 2100}


# --------------------------------------------------------------------------- schemas


@dataclass(frozen=True)
class RegionOut:
    code: str
    name_fr: str
    name_ar: str


@dataclass(frozen=True)
class ProvinceOut:
    code: str
    region_code: str
    name_fr: str
    name_ar: str


@dataclass(frozen=True)
class CensusFigure:
    census_year: int
    population: int


@dataclass(frozen=True)
class CommuneOut:
    code: str
    province_code: str
    region_code: str
    name_fr: str
    name_ar: str
    kind: Literal["urbaine", "rurale", "arrondissement"]
    populations: list[CensusFigure]


@dataclass(frozen=True)
class ProvinceQuery(PageQuery):
    region: str | None = field(default=None, metadata=rule(pattern=REGION))


@dataclass(frozen=True)
class CommuneQuery(PageQuery):
    region: str | None = field(default=None, metadata=rule(pattern=REGION))
    province: str | None = field(default=None, metadata=rule(pattern=PROVINCE))
    kind: Literal["urbaine", "rurale", "arrondissement"] | None = None
    q: str | None = field(default=None, metadata=rule(
        min_length=1, max_length=100, description="Part of the French or Arabic name."))


@dataclass(frozen=True)
class YearQuery:
    year: int | None = field(default=None, metadata=rule(
        **YEAR, description="Calendar year (default: this year)."))


@dataclass(frozen=True)
class QuotaOut:
    entity: str = field(metadata=rule(description="commune:<code> or services:<province>"))
    name_fr: str
    name_ar: str
    province_code: str
    year: int
    policy_version: int
    tier: str
    population: int | None
    census_year: int | None
    allotted: int
    extra: int
    reserved: int
    consumed: int
    released: int
    available: int
    resets_on: date


@dataclass(frozen=True)
class ReportQuery(PageQuery):
    year: int | None = field(default=None, metadata=rule(**YEAR))
    region: str | None = field(default=None, metadata=rule(pattern=REGION))
    province: str | None = field(default=None, metadata=rule(pattern=PROVINCE))
    tier: str | None = field(default=None, metadata=rule(min_length=1, max_length=50))
    exhausted: bool | None = field(default=None, metadata=rule(
        description="Only entities with nothing (true) or something (false) left."))


@dataclass(frozen=True)
class QuotaTotals:
    allotted: int
    extra: int
    reserved: int
    consumed: int
    available: int


@dataclass(frozen=True)
class QuotaReportOut:
    """Per-entity quota use; totals and tier counts cover every matching entity, ``items``
    one page of them."""

    year: int
    policy_version: int
    census_year: int
    tier_counts: dict[str, int]
    totals: QuotaTotals
    items: list[ledger.ReportLine]
    total: int
    limit: int
    offset: int
    next_offset: int | None


@dataclass(frozen=True)
class TierSpec:
    name: str = field(metadata=rule(min_length=1, max_length=50))
    min_population: int = field(metadata=rule(minimum=0, maximum=100_000_000))
    max_population: int | None = field(metadata=rule(minimum=0, maximum=100_000_000))
    yearly_count: int = field(metadata=rule(minimum=0, maximum=1000))


@dataclass(frozen=True)
class PolicyOut:
    version: int
    census_year: int
    first_year: int
    services_count: int
    description: str
    tiers: list[TierSpec]
    replacement_consumes_quota: bool = True


@dataclass(frozen=True)
class PolicyIn:
    """A new policy version. Tiers must cover every population from 0 up, without gap
    or overlap, the last one unbounded (``max_population`` null)."""

    version: int = field(metadata=rule(minimum=1, maximum=10_000))
    census_year: int = field(metadata=rule(**YEAR))
    first_year: int = field(metadata=rule(**YEAR))
    services_count: int = field(metadata=rule(minimum=0, maximum=1000))
    tiers: list[TierSpec] = field(metadata=rule(min_items=1, max_items=20))
    description: str = field(default="", metadata=rule(max_length=500))
    replacement_consumes_quota: bool = field(default=True, metadata=rule(
        description="Whether a replacement token (lost, stolen, damaged) takes one of the "
                    "year's quota."))


@dataclass(frozen=True)
class PartnershipIn:
    commune_code: str = field(metadata=rule(pattern=COMMUNE))
    year: int = field(metadata=rule(**YEAR))
    count: int = field(metadata=rule(minimum=1, maximum=1000))
    unit_price_mad: Decimal = field(metadata=rule(description="e.g. \"850.00\""))
    signed_on: date
    reference: str = field(default="", metadata=rule(max_length=100))


@dataclass(frozen=True)
class PartnershipOut:
    id: int
    commune_code: str
    year: int
    count: int
    unit_price_mad: Decimal
    signed_on: date
    reference: str


@dataclass(frozen=True)
class BillingLineOut:
    commune_code: str
    commune_name_fr: str
    province_code: str
    certificates: int
    unit_price_mad: Decimal
    amount_mad: Decimal
    references: list[str]


@dataclass(frozen=True)
class BillingOut:
    year: int
    total_mad: Decimal
    lines: list[BillingLineOut]


# --------------------------------------------------------------------------- territory


@bp.operation("GET", "/regions", action="refdata.read", query=PageQuery,
              response=page_of(RegionOut), summary="The 12 regions")
def regions(call: Call, query: PageQuery) -> object:
    found = queries.regions(call.session, limit=query.limit, offset=query.offset)
    return make_page(RegionOut, [RegionOut(r.code, r.name_fr, r.name_ar)
                                 for r in found.items], found.total, query.limit,
                     query.offset)


@bp.operation("GET", "/provinces", action="refdata.read", query=ProvinceQuery,
              response=page_of(ProvinceOut), summary="Prefectures and provinces")
def provinces(call: Call, query: ProvinceQuery) -> object:
    found = queries.provinces(call.session, region_code=query.region, limit=query.limit,
                              offset=query.offset)
    return make_page(ProvinceOut, [ProvinceOut(p.code, p.region_code, p.name_fr, p.name_ar)
                                   for p in found.items], found.total, query.limit,
                     query.offset)


def _commune_out(row: queries.CommuneRow) -> CommuneOut:
    c = row.commune
    return CommuneOut(c.code, c.province_code, row.region_code, c.name_fr, c.name_ar,
                      c.kind,  # type: ignore[arg-type]
                      [CensusFigure(y, p) for y, p in sorted(row.populations.items())])


@bp.operation("GET", "/communes", action="refdata.read", query=CommuneQuery,
              response=page_of(CommuneOut),
              summary="Communes and arrondissements with their census populations")
def communes(call: Call, query: CommuneQuery) -> object:
    found = queries.communes(call.session, region_code=query.region,
                             province_code=query.province, kind=query.kind, name=query.q,
                             limit=query.limit, offset=query.offset)
    return make_page(CommuneOut, [_commune_out(r) for r in found.items], found.total,
                     query.limit, query.offset)


@bp.operation("GET", "/communes/<code>", action="refdata.read", response=CommuneOut,
              summary="One commune")
def commune(call: Call, code: str) -> CommuneOut:
    row = queries.commune(call.session, code)
    if row is None:
        raise CommuneNotFound(f"no commune {code}", code=code)
    return _commune_out(row)


# --------------------------------------------------------------------------- quotas


@bp.operation("GET", "/quotas/entities/<entity>", action="quotas.read", query=YearQuery,
              response=QuotaOut,
              summary="A commune's (01.051.01.01) or a province's services' (01.051) quota")
def quota(call: Call, entity: str, query: YearQuery) -> QuotaOut:
    year = query.year or call.clock.now().year
    target = ledger.Entity.parse(entity)
    allot = ledger.allotment(call.session, target, year)
    call.authorize(Scope(province_code=allot.province_code))
    d = ledger.check(call.session, target, year)
    return QuotaOut(str(target), allot.name_fr, allot.name_ar, allot.province_code, year,
                    allot.policy_version, d.tier, allot.population, allot.census_year,
                    d.allotted, d.extra, d.reserved, d.consumed, d.released, d.remaining,
                    d.resets_on)


@bp.operation("GET", "/quotas", action="quotas.read", query=ReportQuery,
              response=QuotaReportOut,
              summary="Quota use per entity, with totals and communes per tier")
def report(call: Call, query: ReportQuery) -> QuotaReportOut:
    scope = call.list_scope()
    province = merge_filter(scope, province_code=query.province)
    year = query.year or call.clock.now().year
    result = ledger.report(call.session, year, region_code=query.region,
                           province_code=province)
    lines = result.lines
    if query.tier:
        lines = [x for x in lines if x.tier == query.tier]
    if query.exhausted is not None:
        lines = [x for x in lines if (x.available <= 0) == query.exhausted]
    totals = {k: sum(getattr(x, k) for x in lines)
              for k in ("allotted", "extra", "reserved", "consumed", "available")}
    tiers: dict[str, int] = {}
    for x in lines:
        if x.entity.startswith("commune:"):
            tiers[x.tier] = tiers.get(x.tier, 0) + 1
    page = lines[query.offset:query.offset + query.limit]
    nxt = query.offset + query.limit if query.offset + query.limit < len(lines) else None
    return QuotaReportOut(year, result.policy_version, result.census_year, tiers,
                          QuotaTotals(**totals),
                          list(page), len(lines), query.limit,
                          query.offset, nxt)


@bp.operation("GET", "/quota-policies", action="quotas.policies.read", query=PageQuery,
              response=page_of(PolicyOut), summary="Quota policy versions and their tiers")
def policies(call: Call, query: PageQuery) -> object:
    specs = policy.list_policies(call.session)
    items = [_policy_out(s) for s in specs[query.offset:query.offset + query.limit]]
    return make_page(PolicyOut, items, len(specs), query.limit, query.offset)


def _policy_out(spec: policy.PolicySpec) -> PolicyOut:
    return PolicyOut(spec.version, spec.census_year, spec.first_year, spec.services_count,
                     spec.description,
                     [TierSpec(t.name, t.min_population, t.max_population, t.yearly_count)
                      for t in spec.tiers], spec.replacement_consumes_quota)


@bp.operation("POST", "/quota-policies", action="quotas.policies.write", body=PolicyIn,
              response=PolicyOut, status=201, errors=(409,),
              summary="Record a new policy version (versions are immutable)")
def create_policy(call: Call, body: PolicyIn) -> PolicyOut:
    spec = policy.PolicySpec(
        body.version, census_year=body.census_year, first_year=body.first_year,
        services_count=body.services_count, description=body.description,
        replacement_consumes_quota=body.replacement_consumes_quota,
        tiers=tuple(policy.Tier(t.name, t.min_population, t.max_population, t.yearly_count)
                    for t in body.tiers))
    policy.record_policy(call.session, call.clock, spec, actor=call.actor)
    return _policy_out(spec)


@bp.operation("POST", "/quotas/partnerships", action="quotas.partnerships.write",
              body=PartnershipIn, response=PartnershipOut, status=201,
              idempotency="optional",
              summary="Record extra certificates a commune buys for a year")
def add_partnership(call: Call, body: PartnershipIn) -> PartnershipOut:
    p = ledger.add_partnership(call.session, call.clock, commune_code=body.commune_code,
                               year=body.year, count=body.count,
                               unit_price_mad=body.unit_price_mad, signed_on=body.signed_on,
                               reference=body.reference, actor=call.actor)
    return PartnershipOut(p.id, p.commune_code, p.year, p.count, p.unit_price_mad,
                          p.signed_on, p.reference)


@bp.operation("GET", "/quotas/billing", action="quotas.billing.read", query=YearQuery,
              response=BillingOut, summary="Partnership certificates billed to communes")
def billing(call: Call, query: YearQuery) -> BillingOut:
    year = query.year or call.clock.now().year
    lines = ledger.billing(call.session, year)
    return BillingOut(year, sum((x.amount_mad for x in lines), Decimal(0)),
                      [BillingLineOut(x.commune_code, x.commune_name_fr, x.province_code,
                                      x.certificates, x.unit_price_mad, x.amount_mad,
                                      list(x.references)) for x in lines])


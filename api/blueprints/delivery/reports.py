"""Provincial overviews and overdue hand-overs."""

from __future__ import annotations

from dataclasses import dataclass, field

from api.delivery_common import PROVINCE
from api.policy import Scope, merge_filter
from api.routing import Call, Routes
from api.schema import PageQuery, make_page, page_of, rule
from api.wiring.flaskapp import wiring
from delivery import (
    batches,
    oversight,
    requests,
)

routes = Routes()


@dataclass(frozen=True)
class ProvinceOverviewOut:
    province_code: str
    by_status: dict[str, int]
    overdue_handovers: int
    holders: int


@dataclass(frozen=True)
class OverdueQuery(PageQuery):
    province: str | None = field(default=None, metadata=rule(pattern=PROVINCE))


@routes.operation("GET", "/provinces/<code>/overview", action="reports.read",
                  response=ProvinceOverviewOut,
                  summary="Requests by status, overdue hand-overs and holders of a province")
def province_overview(call: Call, code: str) -> ProvinceOverviewOut:
    call.authorize(Scope(province_code=code))
    found = requests.province_overview(call.session, call.clock, code,
                                       overdue_days=wiring().policy.handover_overdue_days)
    return ProvinceOverviewOut(found.province_code, dict(found.by_status),
                               found.overdue_handovers, found.holders)


@routes.operation("GET", "/reports/overdue-handovers", action="reports.read",
                  query=OverdueQuery, response=page_of(batches.OverdueToken),
                  summary="Tokens received by a contact and not handed over in time")
def overdue(call: Call, query: OverdueQuery) -> object:
    province = merge_filter(call.list_scope(), province_code=query.province)
    found = batches.overdue_handovers(call.session, call.clock,
                                      overdue_days=wiring().policy.handover_overdue_days,
                                      province_code=province, limit=query.limit,
                                      offset=query.offset)
    return make_page(batches.OverdueToken, list(found.items), found.total,
                     query.limit, query.offset)


@dataclass(frozen=True)
class ExpiringQuery:
    days: int = field(default=oversight.EXPIRY_HORIZON_DAYS,
                      metadata=rule(minimum=1, maximum=366))
    province: str | None = field(default=None, metadata=rule(pattern=PROVINCE))


@dataclass(frozen=True)
class ExpiringProvinceOut:
    province_code: str
    name_fr: str
    name_ar: str
    count: int
    certificates: list[oversight.ExpiringCertificate]


@dataclass(frozen=True)
class ExpiringOut:
    days: int
    total: int
    provinces: list[ExpiringProvinceOut]


@routes.operation("GET", "/reports/expiring", action="reports.expiring", query=ExpiringQuery,
                  response=ExpiringOut,
                  summary="Holders' certificates expiring in the next days (90 by default), by "
                          "province")
def expiring(call: Call, query: ExpiringQuery) -> ExpiringOut:
    province = merge_filter(call.list_scope(), province_code=query.province)
    found = oversight.expiring(call.session, call.clock, days=query.days,
                               province_code=province)
    return ExpiringOut(query.days, sum(p.count for p in found), [
        ExpiringProvinceOut(p.province_code, p.name_fr, p.name_ar, p.count,
                            list(p.certificates))
        for p in found])

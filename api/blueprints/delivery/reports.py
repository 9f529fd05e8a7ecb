"""Provincial overviews and overdue hand-overs."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from api.blueprints.delivery.common import PROVINCE, bp
from api.policy import Scope, merge_filter
from api.routing import Call
from api.schema import PageQuery, make_page, page_of, rule
from api.wiring.flaskapp import wiring
from delivery import (
    batches,
    requests,
)


@dataclass(frozen=True)
class ProvinceOverviewOut:
    province_code: str
    by_status: dict[str, int]
    overdue_handovers: int
    holders: int


@dataclass(frozen=True)
class OverdueOut:
    request_id: int
    holder_id: int
    holder_name: str
    cin: str
    province_code: str
    batch_id: int
    received_at: datetime
    days_waiting: int


@dataclass(frozen=True)
class OverdueQuery(PageQuery):
    province: str | None = field(default=None, metadata=rule(pattern=PROVINCE))


@bp.operation("GET", "/provinces/<code>/overview", action="reports.read",
              response=ProvinceOverviewOut,
              summary="Requests by status, overdue hand-overs and holders of a province")
def province_overview(call: Call, code: str) -> ProvinceOverviewOut:
    call.authorize(Scope(province_code=code))
    found = requests.province_overview(call.session, call.clock, code,
                                       overdue_days=wiring().policy.handover_overdue_days)
    return ProvinceOverviewOut(found.province_code, dict(found.by_status),
                               found.overdue_handovers, found.holders)


@bp.operation("GET", "/reports/overdue-handovers", action="reports.read",
              query=OverdueQuery, response=page_of(OverdueOut),
              summary="Tokens received by a contact and not handed over in time")
def overdue(call: Call, query: OverdueQuery) -> object:
    province = merge_filter(call.list_scope(), province_code=query.province)
    found = batches.overdue_handovers(call.session, call.clock,
                                      overdue_days=wiring().policy.handover_overdue_days,
                                      province_code=province, limit=query.limit,
                                      offset=query.offset)
    return make_page(OverdueOut, [OverdueOut(**vars(x)) for x in found.items], found.total,
                     query.limit, query.offset)

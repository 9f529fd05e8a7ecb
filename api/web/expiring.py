"""Certificates expiring in the next 90 days, by province: for operators and the DGCL
(the whole country) and for a province's contact (their province only)."""

from __future__ import annotations

from typing import Any

from flask import request

from api.web.pages import _html, bp
from api.web.session import Page, page
from delivery import oversight


@bp.get("/expiring")
@page("reports.expiring")
def expiring(p: Page) -> Any:
    try:
        days = min(max(int(request.args.get("days", oversight.EXPIRY_HORIZON_DAYS)), 1), 366)
    except ValueError:
        days = oversight.EXPIRY_HORIZON_DAYS
    province = p.principal.province_code if p.principal.role == "contact" else None
    found = oversight.expiring(p.session, p.clock, days=days, province_code=province)
    return _html("expiring.html", 200, provinces=found, days=days,
                 total=sum(x.count for x in found))

"""The campaigns page: each election campaign's seats, worst blocked first (operators and
the DGCL; a contact sees their province's seats). The figures are
:func:`delivery.campaigns.report`'s, as the API serves them."""

from __future__ import annotations

from typing import Any

from api.web.pages import _html, bp
from api.web.session import Page, page
from delivery import campaigns


@bp.get("/campaigns")
@page("campaigns.read")
def campaigns_page(p: Page) -> Any:
    return _campaign_page(p, None)


@bp.get("/campaigns/<int:campaign_id>")
@page("campaigns.read")
def campaign_page(p: Page, campaign_id: int) -> Any:
    return _campaign_page(p, campaign_id)


def _campaign_page(p: Page, campaign_id: int | None) -> Any:
    listed = campaigns.list_campaigns(p.session)
    province = p.principal.province_code if p.principal.role == "contact" else None
    chosen = campaign_id if campaign_id is not None else (listed[0].id if listed else None)
    found = (campaigns.report(p.session, p.clock, chosen, province_code=province)
             if chosen is not None else None)
    return _html("campaigns.html", campaigns=listed, report=found, steps=campaigns.STEPS)

"""The operator's journey in the browser, in French and in Arabic: the queue, the search
(CIN, filters, sort, pages), a bulk approval where one request is refused and says why in
the page's language, the structured identity check, a province's batch prepared and
dispatched with its tracking number (a bad number refused next to its field). Every page
passes axe-core and fits 390 px."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import select

from delivery import requests
from delivery.models import APPROVED, SHIPPED, CertificateRequest, RequestEvent
from tests.delivery.oversight_scene import HERE
from tests.e2e.conftest import Site, check, fits, login, set_lang

pytestmark = [pytest.mark.hsm,
              pytest.mark.parametrize("db_engine", ["sqlite"], indirect=True)]

REFUSED = {"fr": "pas possible", "ar": "غير ممكن"}


@pytest.mark.parametrize("lang", ["fr", "ar"])
def test_operator_journey(page: Page, site: Site, lang: str) -> None:
    scene = site.scene
    with site.rt.unit_of_work() as session:  # D's token was personalised (as by the CA)
        found = session.get_one(CertificateRequest, scene.request_d)
        requests.move(session, site.rt.clock, found, "personalise", actor="operator")
    login(page, site, "operator")
    page.goto(f"{site.url}/web/queue")
    set_lang(page, site, lang)
    check(page, site, "operator-queue")
    fits(page)

    # search: by CIN, then everything submitted or approved, newest first, two a page
    page.click("#search-link")
    page.fill("#search-form input[name=q]", scene.holder_b_new.cin)
    page.click("#search-form button[type=submit]")
    expect(page.locator("#results tbody tr")).to_have_count(1)
    expect(page.locator(f"#result-{scene.request_b_new}")).to_be_visible()
    check(page, site, "operator-search")
    page.goto(f"{site.url}/web/requests?sort=id&order=desc&per=2")
    first = page.locator("#results tbody tr").first.get_attribute("id")
    page.click("#page-next")
    expect(page).to_have_url(re.compile(r"page=2"))
    assert page.locator("#results tbody tr").first.get_attribute("id") != first
    fits(page)

    # bulk approval: the submitted request is approved, the shipped one refused with why
    page.goto(f"{site.url}/web/requests?sort=id")
    page.check(f"#result-{scene.request_b_new} input[type=checkbox]")
    page.check(f"#result-{scene.request_in_transit} input[type=checkbox]")
    page.select_option("#bulk select[name=document]", "cin")
    page.click("#bulk-approve")
    expect(page.locator(f"#outcome-{scene.request_b_new}")).to_have_class("ok")
    refused = page.locator(f"#outcome-{scene.request_in_transit}")
    expect(refused).to_have_class("refused")
    expect(refused).to_contain_text(REFUSED[lang])
    check(page, site, "operator-bulk")
    with site.rt.unit_of_work() as session:
        approved = session.get_one(CertificateRequest, scene.request_b_new)
        assert approved.status == APPROVED
        notes = session.scalars(select(RequestEvent.note).where(
            RequestEvent.request_id == scene.request_b_new)).all()
        assert f"cin {scene.holder_b_new.cin} checked by operator" in notes

    # ship D's token: prepare the province's batch, then dispatch it with its number
    page.goto(f"{site.url}/web/queue")
    page.click(f"#prepare-{HERE.replace('.', '-')} button")
    expect(page.locator("#flash")).to_be_visible()
    dispatch = page.locator("form[id^=dispatch-]")
    dispatch.locator("input[name=tracking_number]").fill("XX12")
    dispatch.locator("button[type=submit]").click()
    expect(page.locator("[id$=-tracking_number].field-error")).to_be_visible()
    check(page, site, "operator-dispatch-refused")
    dispatch = page.locator("form[id^=dispatch-]")
    dispatch.locator("input[name=tracking_number]").fill("EE111111115MA")
    dispatch.locator("button[type=submit]").click()
    expect(page.locator("#flash")).to_be_visible()
    with site.rt.unit_of_work() as session:
        assert session.get_one(CertificateRequest, scene.request_d).status == SHIPPED

"""The province page's long tables come in pages (25 rows), the pager's words in the
page's language; the page still fits a 390 px screen and passes axe-core."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from delivery import holders
from tests.delivery.oversight_scene import COMMUNE_A, HERE
from tests.e2e.conftest import Site, check, fits, login, set_lang

pytestmark = [pytest.mark.hsm,
              pytest.mark.parametrize("db_engine", ["sqlite"], indirect=True)]


@pytest.mark.parametrize("lang", ["fr", "ar"])
def test_province_holders_come_in_pages(page: Page, site: Site, lang: str) -> None:
    with site.rt.unit_of_work() as session:
        for n in range(30):
            holders.register_holder(session, site.rt.clock, holders.HolderRegistration(
                cin=f"PG{n:06d}", given_name_fr="Nadia", surname_fr=f"Test {n}",
                given_name_ar="نادية", surname_ar=f"اختبار {n}", role="vice_president",
                mobile=f"06612{n:05d}", email=f"n{n}@example.ma", commune_code=COMMUNE_A),
                actor="contact")
    login(page, site, "contact")
    set_lang(page, site, lang)
    page.goto(f"{site.url}/web/province/{HERE}")
    rows = page.locator("#holders tbody tr")
    expect(rows).to_have_count(25)
    pager = page.locator("#pager-holders")
    expect(pager.locator("[aria-current=page]")).to_contain_text("1")
    check(page, site, "province-paged")
    fits(page)
    pager.locator("a[rel=next]").click()
    with site.rt.unit_of_work() as session:
        total = holders.list_holders(session, province_code=HERE).total
    expect(page.locator("#holders tbody tr")).to_have_count(total - 25)
    expect(page.locator("#pager-holders a[rel=prev]")).to_be_visible()
    # the request form still offers every holder of the province
    assert page.locator("select[name=holder_id] option").count() >= 30

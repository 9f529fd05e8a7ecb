"""The ministry's reports and policies in the browser, in French and in Arabic: the national
and a regional report each show their charts (inline SVG with a title and a description,
beside the table of the same figures); a new quota policy version is made from an existing
one, a gap between tiers refused next to the tiers in the page's language, then recorded.
Every page passes axe-core and fits 390 px."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from quotas import policy
from tests.e2e.conftest import Site, check, fits, login, set_lang

pytestmark = [pytest.mark.hsm,
              pytest.mark.parametrize("db_engine", ["sqlite"], indirect=True)]


@pytest.mark.parametrize("lang", ["fr", "ar"])
def test_reports_with_charts_and_a_new_policy_version(page: Page, site: Site,
                                                      lang: str) -> None:
    login(page, site, "admin")
    expect(page).to_have_url(re.compile(r"/web/national$"))
    set_lang(page, site, lang)
    chart = page.locator("#chart-able")
    expect(chart).to_have_attribute("role", "img")
    assert (chart.locator("title").text_content() or "").strip()
    assert chart.locator("rect").count() == 12  # one bar per region
    assert page.locator("#chart-consumed rect").count() == 12
    check(page, site, "ministry-national")
    fits(page)
    page.locator("#areas tbody tr a").first.click()  # a region's report
    expect(page).to_have_url(re.compile(r"/web/region/"))
    expect(page.locator("#chart-able")).to_be_visible()
    check(page, site, "ministry-region")

    # a new version from version 2: a gap between tiers is refused next to the tiers
    page.click("#nav-quotas")
    with site.rt.unit_of_work() as session:
        latest = max(s.version for s in policy.list_policies(session))
    page.click(f"#edit-policy-{latest}")
    form = page.locator("#policy")
    expect(form.locator("input[name=version]")).to_have_value(str(latest + 1))
    expect(form.locator("input[name=tier0_name]")).not_to_have_value("")
    form.locator("input[name=first_year]").fill("2028")
    form.locator("input[name=tier1_min]").fill("25000")  # 20,000 to 24,999 uncovered
    form.locator("button[type=submit]").click()
    error = page.locator("#policy .field-error")
    expect(error).to_be_visible()
    if lang == "ar":
        assert re.search(r"[\u0600-\u06FF]", error.inner_text())
    check(page, site, "ministry-policy-refused")
    form = page.locator("#policy")
    form.locator("input[name=tier0_max]").fill("24999")
    form.locator("input[name=tier3_name]").fill("metropole")
    form.locator("input[name=tier2_max]").fill("999999")
    form.locator("input[name=tier3_min]").fill("1000000")
    form.locator("input[name=tier3_count]").fill("8")
    form.locator("button[type=submit]").click()
    expect(page.locator("#flash")).to_be_visible()
    expect(page.locator(f"#policy-{latest + 1}")).to_be_visible()
    with site.rt.unit_of_work() as session:
        spec = policy.load_spec(session, latest + 1)
    assert spec.first_year == 2028 and [t.yearly_count for t in spec.tiers] == [3, 4, 5, 8]
    assert spec.tiers[0].max_population == 24_999
    check(page, site, "ministry-policy")

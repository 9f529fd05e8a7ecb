"""The DGCL administrator's journey in the browser, in French and in Arabic: quota policies
and billing, a partnership recorded (a bad one refused in the page's language), a user
created and disabled, an API key created (shown once) and revoked, the audit log and its
chain check, the national CSV report (UTF-8 with BOM, ';', French and Arabic names). Every
page passes axe-core."""

from __future__ import annotations

import csv
import io
import re

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import select

from api import accounts
from api.models import ApiKey, User
from delivery import campaigns
from tests.delivery.oversight_scene import COMMUNE_A, YEAR
from tests.e2e.conftest import Site, check, fits, login, set_lang

pytestmark = [pytest.mark.hsm,
              pytest.mark.parametrize("db_engine", ["sqlite"], indirect=True)]


@pytest.mark.parametrize("lang", ["fr", "ar"])
def test_admin_journey(page: Page, site: Site, lang: str) -> None:
    login(page, site, "admin")
    expect(page).to_have_url(re.compile(r"/web/national$"))
    set_lang(page, site, lang)

    # the national report as a file a French spreadsheet opens
    with page.expect_download() as download:
        page.click("#report-csv")
    raw = open(download.value.path(), "rb").read()
    assert raw.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig")), delimiter=";"))
    assert rows[0][:3] == ["code", "nom", "الاسم"] and len(rows) == 13  # 12 regions
    north = next(r for r in rows if r[0] == "01")
    assert "Tanger" in north[1] and "طنجة" in north[2]

    # quotas: policies, a refused then a recorded partnership, billing
    page.click("#nav-quotas")
    expect(page.locator("#policies")).to_be_visible()
    check(page, site, "admin-quotas")
    form = page.locator("#partnership-form")
    form.locator("input[name=commune_code]").fill(COMMUNE_A)
    form.locator("input[name=year]").fill(str(YEAR))
    form.locator("input[name=count]").fill("0")
    form.locator("input[name=unit_price_mad]").fill("450")
    form.locator("input[name=signed_on]").fill(f"{YEAR}-01-15")
    form.locator("input[name=reference]").fill("CONV-2026-17")
    form.locator("button[type=submit]").click()
    expect(page.locator("#form-error")).to_be_visible()
    if lang == "ar":
        assert re.search(r"[\u0600-\u06FF]", page.locator("#form-error").inner_text())
    page.locator("#partnership-form input[name=count]").fill("2")
    page.locator("#partnership-form button[type=submit]").click()
    expect(page.locator("#flash")).to_be_visible()
    expect(page.locator(f"#bill-{COMMUNE_A.replace('.', '-')}")).to_contain_text("900")
    fits(page)

    # users and API keys
    page.click("#nav-users")
    check(page, site, "admin-users")
    username = f"operateur.{lang}"
    form = page.locator("#user-form")
    form.locator("input[name=username]").fill(username)
    form.locator("input[name=display_name]").fill("Nadia Operatrice")
    form.locator("select[name=role]").select_option("operator")
    form.locator("input[name=password]").fill("correct horse battery staple")
    form.locator("button[type=submit]").click()
    expect(page.locator("#flash")).to_be_visible()
    row = page.locator(f"#user-operateur-{lang}")
    row.locator("button").click()
    expect(page.locator("#flash")).to_be_visible()
    with site.rt.unit_of_work() as session:
        user = session.scalars(select(User).filter_by(username=username)).one()
        assert user.role == "operator" and not user.active
    page.fill("#key-form input[name=name]", "Plateforme des permis")
    page.click("#key-form button")
    key = page.locator("#new-key-value").inner_text()
    assert key.startswith(accounts.KEY_PREFIX)
    check(page, site, "admin-key-created")
    page.goto(f"{site.url}/web/admin/users")
    assert key not in page.content()  # shown once
    with site.rt.unit_of_work() as session:
        key_id = session.scalars(select(ApiKey.id).filter_by(name="Plateforme des permis")).one()
    page.locator(f"#key-{key_id} button").click()
    expect(page.locator("#flash")).to_be_visible()

    # the audit log and its chain check
    page.click("#nav-audit")
    expect(page.locator("#events tbody tr").first).to_be_visible()
    page.click("#chain-check")
    expect(page.locator("#chain-result")).to_be_visible()
    check(page, site, "admin-audit")
    fits(page)

    # an election campaign installed today, with a seat nobody can sign for yet
    with site.rt.unit_of_work() as session:
        clock = site.rt.clock
        opened = campaigns.open_campaign(
            session, clock, name=f"Communales ({lang})", installation_date=clock.now().date(),
            scope_kind="communes", scope_codes=[COMMUNE_A], funding="extra", actor="admin")
        campaigns.import_elected(session, clock, opened.id, "\n".join([
            ",".join(campaigns.CSV_COLUMNS),
            f"{COMMUNE_A},president,QX{YEAR % 1000}{len(lang)}1,Salma,Bennani,سلمى,بناني,"
            "Mme,0661234599,salma@example.ma"]), actor="admin", token_form="hosted")
    page.click("#nav-campaigns")
    expect(page.locator("#blocked-seats")).to_be_visible()
    expect(page.locator("#seats tbody tr")).to_have_count(1)
    check(page, site, "campaigns")

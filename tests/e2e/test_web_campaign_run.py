"""Running an election campaign in the browser, in French and in Arabic (DGCL admin): open
it (a refused scope first, beside its field), import the newly elected from a CSV file (a
file with errors first: each shown with its line number, nothing imported), a dry run of
the installation listing the outgoing certificate, then the installation, which revokes it
on the real CA. Every page passes axe-core.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import select

from delivery import campaigns
from delivery.models import Campaign, CertificateRequest
from pki.models import CertificateRecord
from tests.api.conftest import COMMUNE
from tests.delivery.conftest import random_cin
from tests.e2e.conftest import Site, check, login, set_lang
from tests.e2e.test_web_incident import Scene
from tests.e2e.test_web_incident import incident_site as incident_site

pytestmark = [pytest.mark.hsm,
              pytest.mark.parametrize("db_engine", ["sqlite"], indirect=True)]

WORDS = {"fr": {"line": "Ligne 3", "scope": "codes du périmètre"},
         "ar": {"line": "السطر 3", "scope": "رموز النطاق"}}


def _csv(tmp_path: Path, name: str, lines: list[str]) -> Path:
    path = tmp_path / name
    path.write_text("\n".join([",".join(campaigns.CSV_COLUMNS), *lines]) + "\n",
                    encoding="utf-8")
    return path


@pytest.mark.parametrize("lang", ["fr", "ar"])
def test_run_a_campaign(page: Page, incident_site: Site, lang: str,
                        tmp_path: Path) -> None:
    site, words = incident_site, WORDS[lang]
    scene: Scene = site.scene
    with site.rt.unit_of_work() as session:
        outgoing = session.get_one(CertificateRequest, scene.own).certificate_serial
    login(page, site, "admin")
    set_lang(page, site, lang)
    page.goto(f"{site.url}/web/campaigns")
    check(page, site, "campaign-none")

    # open: a province scope without its code is refused beside the field
    box = page.locator("#campaign-open")
    box.locator("summary").click()
    box.locator("input[name=name]").fill("Communales 2027")
    box.locator("input[name=installation_date]").fill(
        site.rt.clock.now().date().isoformat())
    box.locator("select[name=scope_kind]").select_option("province")
    box.locator("select[name=funding]").select_option("extra")
    box.locator("button[type=submit]").click()
    error = page.locator("#error-campaign-open-scope_codes")
    expect(error).to_contain_text(words["scope"])
    expect(page.locator("#campaign-open input[name=name]")).to_have_value("Communales 2027")
    check(page, site, "campaign-open-refused")
    box = page.locator("#campaign-open")
    box.locator("select[name=scope_kind]").select_option("communes")
    box.locator("input[name=scope_codes]").fill(COMMUNE)
    box.locator("button[type=submit]").click()
    expect(page.locator("#flash")).to_be_visible()
    with site.rt.unit_of_work() as session:
        campaign_id = session.scalars(select(Campaign.id)).one()

    # a file with errors: every error with its line number, nothing imported
    bad = _csv(tmp_path, "bad.csv", [
        f"{COMMUNE},president,{random_cin()},Nadia,Amrani,نادية,العمراني,M,0661234501,"
        "n@example.ma",
        f"99.999.99.99,president,{random_cin()},Ali,Fassi,علي,الفاسي,M,0661234502,"
        "a@example.ma"])
    page.locator("#campaign-import input[name=csv]").set_input_files(str(bad))
    page.locator("#campaign-import button[type=submit]").click()
    expect(page.locator("#line-errors")).to_contain_text(words["line"])
    assert "commune_code" not in page.locator("#line-errors").inner_text()
    check(page, site, "campaign-import-refused")
    with site.rt.unit_of_work() as session:
        assert session.get_one(Campaign, campaign_id).status == "open"

    good = _csv(tmp_path, "good.csv", [
        f"{COMMUNE},president,{random_cin()},Nadia,Amrani,نادية,العمراني,M,0661234501,"
        "n@example.ma"])
    page.locator("#campaign-import input[name=csv]").set_input_files(str(good))
    page.locator("#campaign-import button[type=submit]").click()
    expect(page.locator("#flash")).to_be_visible()

    # a dry run first: what would be revoked, nothing changed
    page.locator("#campaign-install button[type=submit]").click()
    expect(page.locator("#install-serials")).to_contain_text(str(outgoing))
    check(page, site, "campaign-dry-run")
    with site.rt.unit_of_work() as session:
        assert session.scalars(select(CertificateRecord.status).filter_by(
            serial=outgoing)).one() == "issued"
    page.locator("#campaign-install button[type=submit]").click()
    expect(page.locator("#flash")).to_be_visible()
    expect(page).to_have_url(re.compile(rf"/web/campaigns/{campaign_id}\?done="))
    with site.rt.unit_of_work() as session:
        assert session.scalars(select(CertificateRecord.status).filter_by(
            serial=outgoing)).one() == "revoked"
        assert session.get_one(Campaign, campaign_id).status == "installed"
    check(page, site, "campaign-installed")

    # the province's contact follows the campaign but cannot run it
    page.context.clear_cookies()
    login(page, site, "contact")
    page.goto(f"{site.url}/web/campaigns/{campaign_id}")
    expect(page.locator("#seats")).to_be_visible()
    expect(page.locator("#campaign-open")).to_have_count(0)
    expect(page.locator("#campaign-import")).to_have_count(0)

"""Running an election campaign in the browser, in French and in Arabic (DGCL admin): open
it (a refused scope first, beside its field), import the newly elected from a CSV file (a
file with errors first: each shown with its line number, nothing imported), a dry run of
the installation listing the outgoing certificate, then the installation, which revokes it
on the real CA. The operator's own campaign runs end to end: open, import, the token
prepared from the campaign's page (approved, personalised, with its progress), shipped,
the installation after its dry run, and the blocked communes. Every page passes axe-core.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import select

from delivery import campaigns
from delivery.models import Campaign, CertificateRequest, Holder
from pki.models import CertificateRecord
from tests.api.conftest import COMMUNE
from tests.delivery.conftest import random_cin
from tests.e2e.conftest import Site, check, fits, login, set_lang
from tests.e2e.test_web_incident import PROVINCE, Scene
from tests.e2e.test_web_incident import incident_site as incident_site

pytestmark = [pytest.mark.hsm,
              pytest.mark.parametrize("db_engine", ["sqlite"], indirect=True)]

WORDS = {"fr": {"line": "Ligne 3", "scope": "codes du périmètre", "errors": [
    ("Ligne 3", "« 99.999.99.99 » n'est le code d'aucune commune"),
    ("Ligne 4", "CIN", "une ou deux lettres"),
    ("Ligne 5", "figure déjà à la ligne 2", "Président"),
    ("Ligne 6", "nombre de colonnes : 5 au lieu de 10"),
    ("Ligne 7", "téléphone", "numéro de mobile valide"),
    ("Ligne 8", "fonction inconnue"),
    ("Ligne 9", "la CIN", "figure déjà à la ligne 2")]},
         "ar": {"line": "السطر 3", "scope": "رموز النطاق", "errors": [
    ("السطر 3", "ليس رمز أي جماعة"),
    ("السطر 4", "بحرف أو حرفين"),
    ("السطر 5", "وارد من قبل في السطر 2", "رئيس"),
    ("السطر 6", "عدد الأعمدة: 5 بدل 10"),
    ("السطر 7", "الهاتف", "ليس رقم هاتف محمول صالحا"),
    ("السطر 8", "مهمة غير معروفة"),
    ("السطر 9", "رقم البطاقة الوطنية", "وارد من قبل في السطر 2")]}}


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

    # a file with errors of several kinds: each beside the upload field, with its line
    # number and its reason in the page's language; nothing imported
    taken = random_cin()
    bad = _csv(tmp_path, "bad.csv", [
        f"{COMMUNE},president,{taken},Nadia,Amrani,نادية,العمراني,Mme,0661234501,"
        "n@example.ma",
        f"99.999.99.99,president,{random_cin()},Ali,Fassi,علي,الفاسي,M,0661234502,"
        "a@example.ma",
        f"{COMMUNE},vice_president,12345,Ali,Fassi,علي,الفاسي,M,0661234503,b@example.ma",
        f"{COMMUNE},president,{random_cin()},Omar,Idrissi,عمر,الإدريسي,M,0661234504,"
        "o@example.ma",
        f"{COMMUNE},official,{random_cin()},Sara,Alaoui",
        f"{COMMUNE},official,{random_cin()},Sara,Alaoui,سارة,العلوي,F,12,s@example.ma",
        f"{COMMUNE},mayor,{random_cin()},Sara,Alaoui,سارة,العلوي,F,0661234506,"
        "s@example.ma",
        f"{COMMUNE},secretary_general,{taken},Nadia,Amrani,نادية,العمراني,Mme,0661234501,"
        "n@example.ma"])
    page.locator("#campaign-import input[name=csv]").set_input_files(str(bad))
    page.locator("#campaign-import button[type=submit]").click()
    errors = page.locator("#campaign-import #line-errors li")
    expect(errors).to_have_count(7)
    expect(page.locator("#campaign-import input[name=csv]")).to_have_attribute(
        "aria-describedby", "line-errors")
    shown = errors.all_inner_texts()
    for text, expected in zip(shown, words["errors"], strict=True):
        for part in expected:
            assert part in text, (text, part)
    listed = "\n".join(shown)
    for internal in ("commune_code", "vice_president", "secretary_general", "mayor",
                     "phone", "columns", "expected", "is not", "already", "line"):
        assert not re.search(rf"\b{internal}\b", listed), internal
    if lang == "ar":
        assert not re.search(r"\b(?!AB\d)[A-Za-z]{3,}", listed.replace("CSV", "")), listed
    check(page, site, "campaign-import-refused")
    fits(page, shot="campaign-import-refused")
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


RUN = {"fr": {"blocked": "1 siège sans personne pouvant signer, sur 1", "shipped": "Expédiée",
              "no": "non, depuis le", "revoked": "Révoqué",
              "title": "Présidente du conseil de la commune",
              "before": ("0 jeton préparé sur 1", "1 reste à préparer"),
              "after": ("1 jeton préparé sur 1", "0 reste à préparer")},
       "ar": {"blocked": "مقعد واحد بدون توقيع من أصل 1", "shipped": "مُرسَل",
              "no": "لا، منذ", "revoked": "ملغاة", "title": "رئيسة مجلس الجماعة",
              "before": ("لا جهاز مُحضَّر من أصل 1", "بقي جهاز واحد للتحضير"),
              "after": ("جهاز واحد مُحضَّر من أصل 1", "لم يبق شيء للتحضير")}}


@pytest.mark.parametrize("lang", ["fr", "ar"])
def test_the_operators_campaign_end_to_end(page: Page, incident_site: Site, lang: str,
                                           tmp_path: Path) -> None:
    """The operator opens a campaign, imports the newly elected (a device token), prepares
    the tokens from the campaign's page (approval and personalisation, with the counts
    prepared and left), prepares and dispatches the province's batch, installs after a dry
    run, and reads the blocked communes: the seat waits for its token."""
    site, words = incident_site, RUN[lang]
    scene: Scene = site.scene
    with site.rt.unit_of_work() as session:
        outgoing = {session.get_one(CertificateRequest, r).certificate_serial
                    for r in (scene.own, scene.other)}
    login(page, site, "operator")
    set_lang(page, site, lang)
    page.goto(f"{site.url}/web/campaigns")
    box = page.locator("#campaign-open")
    box.locator("summary").click()
    box.locator("input[name=name]").fill("Partielles 2027")
    box.locator("input[name=installation_date]").fill(site.rt.clock.now().date().isoformat())
    box.locator("select[name=scope_kind]").select_option("communes")
    box.locator("input[name=scope_codes]").fill(COMMUNE)
    box.locator("select[name=funding]").select_option("extra")
    box.locator("button[type=submit]").click()
    expect(page.locator("#flash")).to_be_visible()
    check(page, site, "operator-campaign-opened")
    with site.rt.unit_of_work() as session:
        campaign_id = session.scalars(select(Campaign.id)).one()

    cin = random_cin()
    elected = _csv(tmp_path, "elected.csv", [
        f"{COMMUNE},president,{cin},Hanane,Tazi,حنان,التازي,Mme,0661234509,h@example.ma"])
    page.locator("#campaign-import input[name=csv]").set_input_files(str(elected))
    page.locator("#campaign-import select[name=token_form]").select_option("device")
    page.locator("#campaign-import button[type=submit]").click()
    expect(page.locator("#flash")).to_be_visible()
    seat = page.locator(f"#seat-{COMMUNE.replace('.', '-')}-president")
    expect(seat).to_contain_text("حنان التازي" if lang == "ar" else "Hanane Tazi")
    expect(seat).to_contain_text(words["title"])  # her title agrees with her civility
    check(page, site, "operator-campaign-imported")
    with site.rt.unit_of_work() as session:
        incoming = session.scalars(select(CertificateRequest.id).join(
            Holder, Holder.id == CertificateRequest.holder_id).where(Holder.cin == cin)).one()

    # prepare the tokens from the campaign's page: approve (identity checked) and
    # personalise, with the counts prepared and left; then ship the batch
    prepare = page.locator("#campaign-prepare")
    expect(prepare.locator("#prepared-count")).to_have_text(words["before"][0])
    expect(prepare.locator("#to-prepare-count")).to_have_text(words["before"][1])
    expect(prepare.locator("#prepare-progress")).to_have_attribute("value", "0")
    check(page, site, "operator-campaign-to-prepare")
    prepare.locator("input[name=identity_check]").fill("CIN et procès-verbal vérifiés")
    prepare.locator("button[type=submit]").click()
    expect(page.locator("#flash")).to_be_visible()
    prepare = page.locator("#campaign-prepare")
    expect(prepare.locator("#prepared-count")).to_have_text(words["after"][0])
    expect(prepare.locator("#to-prepare-count")).to_have_text(words["after"][1])
    expect(prepare.locator("#prepare-progress")).to_have_attribute("value", "1")
    expect(prepare.locator("button[type=submit]")).to_have_count(0)  # nothing left
    expect(seat).to_contain_text(words["title"])
    check(page, site, "operator-campaign-personalised")
    fits(page, shot="operator-campaign-prepared")
    with site.rt.unit_of_work() as session:
        assert session.get_one(CertificateRequest, incoming).status == "personalised"
    page.goto(f"{site.url}/web/queue")
    page.click(f"#prepare-{PROVINCE.replace('.', '-')} button")
    expect(page.locator("#flash")).to_be_visible()
    dispatch = page.locator("form[id^=dispatch-]")
    dispatch.locator("input[name=tracking_number]").fill("EE111111115MA")
    dispatch.locator("button[type=submit]").click()
    expect(page.locator("#flash")).to_be_visible()
    with site.rt.unit_of_work() as session:
        assert session.get_one(CertificateRequest, incoming).status == "shipped"

    # install: a dry run lists the outgoing certificates, then the installation revokes them
    page.goto(f"{site.url}/web/campaigns/{campaign_id}")
    page.locator("#campaign-install button[type=submit]").click()
    serials = page.locator("#install-serials li").all_inner_texts()
    assert {s.strip() for s in serials} == outgoing
    check(page, site, "operator-campaign-dry-run")
    with site.rt.unit_of_work() as session:
        assert set(session.scalars(select(CertificateRecord.status).where(
            CertificateRecord.serial.in_(outgoing)))) == {"issued"}
    page.locator("#campaign-install button[type=submit]").click()
    expect(page.locator("#flash")).to_be_visible()
    with site.rt.unit_of_work() as session:
        assert set(session.scalars(select(CertificateRecord.status).where(
            CertificateRecord.serial.in_(outgoing)))) == {"revoked"}
        assert session.get_one(Campaign, campaign_id).status == "installed"

    # the blocked communes: the seat has nobody who can sign, its token is on its way
    expect(page.locator("#blocked-count")).to_have_text(words["blocked"])
    blocked = page.locator("#blocked-seats tbody tr")
    expect(blocked).to_have_count(1)
    expect(blocked).to_contain_text(words["shipped"])
    expect(blocked).to_contain_text(words["title"])
    expect(seat).to_contain_text(words["no"])
    expect(seat).to_contain_text(words["revoked"])
    check(page, site, "operator-campaign-blocked")
    fits(page, shot="operator-campaign-blocked")

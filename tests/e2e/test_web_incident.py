"""A lost, stolen or damaged token reported in the browser, in French and in Arabic: the
holder reports their own token on ``/web/me`` (a refusal first, shown beside the field),
the province's contact reports another holder's token from the holder rows of the
province page, a token personalised but not active yet, and another from the hand-over
area (the requests table; a refusal first, beside that form's own field). The certificate
is suspended (lost, damaged) or revoked (stolen) on the real CA, and a replacement request
follows. Every page passes axe-core.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from flask import Flask
from playwright.sync_api import Page, expect
from sqlalchemy import select

from api.app import create_app
from api.runtime import Runtime
from api.wiring.flaskapp import wiring as app_wiring
from core.audit import AuditEvent
from delivery import holders, personalisation, requests
from delivery.models import KIND_REPLACEMENT, CertificateRequest
from pki.models import CertificateRecord
from tests.api.conftest import COMMUNE, make_user, provision_service_tokens
from tests.delivery.conftest import make_contact, random_cin, random_mobile
from tests.e2e.conftest import SHOTS, Site, check, fits, login, serve, set_lang

pytestmark = [pytest.mark.hsm,
              pytest.mark.parametrize("db_engine", ["sqlite"], indirect=True)]

PROVINCE = "01.051"
OTHER_COMMUNE = "01.051.01.05"  # its own quota: the first commune's is used up by then
WORDS = {"fr": {"suspended": "suspendu", "revoked": "révoqué", "note": "précisions"},
         "ar": {"suspended": "عُلِّقت", "revoked": "أُلغيت", "note": "التفاصيل"}}


@dataclass
class Scene:
    own: int  # the logged-in holder's active request
    other: int  # another holder's active request, reported by the contact
    early: int  # a third holder's request personalised, not active yet


@pytest.fixture
def incident_site(api_runtime: Runtime) -> Iterator[Site]:
    rt = api_runtime
    app: Flask = create_app(rt=rt)
    app.testing = False
    provision_service_tokens(rt)
    wiring = app_wiring(app)
    with app.app_context():
        personaliser, sealer = wiring.personaliser(), wiring.sealer()
    active: list[tuple[int, int]] = []
    with rt.unit_of_work() as session:
        contact = make_contact(session, rt.clock, PROVINCE)
        for given, surname, commune in (("Salma", "Idrissi", COMMUNE),
                                        ("Omar", "Alaoui", COMMUNE),
                                        ("Nadia", "Amrani", OTHER_COMMUNE)):
            holder = holders.register_holder(session, rt.clock, holders.HolderRegistration(
                cin=random_cin(), given_name_fr=given, surname_fr=surname,
                given_name_ar="سلمى", surname_ar="الإدريسي", role="president",
                mobile=random_mobile(), email=f"{given.lower()}@example.ma",
                commune_code=commune), actor="contact", contact_id=contact.id)
            asked = requests.submit_request(session, rt.clock, contact_id=contact.id,
                                            holder_id=holder.id, token_form="hosted",
                                            actor="contact")
            requests.approve_request(session, rt.clock, asked.id, actor="operator",
                                     identity_check="CIN vérifiée")
            personalisation.personalise_request(
                session, rt.clock, asked.id, personaliser=personaliser, sealer=sealer,
                actor="operator", policy=wiring.policy)
            if given != "Nadia":
                requests.activate_request(session, rt.clock, asked.id, actor="holder")
            active.append((asked.id, holder.id))
    make_user(rt, app, "salma", "holder", holder_id=active[0][1])
    make_user(rt, app, "contact", "contact", province_code=PROVINCE)
    make_user(rt, app, "admin", "dgcl_admin")
    make_user(rt, app, "operator", "operator")
    with serve(app) as url:
        yield Site(url, rt, Scene(active[0][0], active[1][0], active[2][0]), SHOTS)


def _outcome(rt: Runtime, request_id: int) -> tuple[str, CertificateRequest]:
    with rt.unit_of_work() as session:
        old = session.get_one(CertificateRequest, request_id)
        record = session.scalars(select(CertificateRecord).filter_by(
            serial=old.certificate_serial)).one()
        replacement = session.scalars(select(CertificateRequest).filter_by(
            follows_request_id=request_id)).one()
        session.expunge(replacement)
        return record.status, replacement


@pytest.mark.parametrize("lang", ["fr", "ar"])
def test_token_incidents(page: Page, incident_site: Site, lang: str) -> None:
    site, words = incident_site, WORDS[lang]
    scene: Scene = site.scene

    # the holder: a report without a note is refused beside the field, in the language
    login(page, site, "salma")
    expect(page).to_have_url(re.compile(r"/web/me$"))
    set_lang(page, site, lang)
    box = page.locator(f"#incident-{scene.own}")
    box.locator("summary").click()
    check(page, site, "incident-holder-form")
    box.locator("select[name=incident]").select_option("lost")
    box.locator("button[type=submit]").click()
    error = page.locator(f"#error-incident-{scene.own}-note")
    expect(error).to_be_visible()
    expect(error).to_contain_text(words["note"])
    assert "note" not in error.inner_text().replace(words["note"], "")
    check(page, site, "incident-holder-refused")

    box = page.locator(f"#incident-{scene.own}")
    box.locator("select[name=incident]").select_option("lost")
    box.locator("textarea[name=note]").fill("Perdu au marché le 28 novembre")
    box.locator("button[type=submit]").click()
    expect(page.locator("#flash")).to_contain_text(words["suspended"])
    status, replacement = _outcome(site.rt, scene.own)
    assert status == "suspended"
    assert replacement.kind == KIND_REPLACEMENT and replacement.status == "submitted"
    expect(page.locator(f"#credential-{replacement.id}")).to_be_visible()
    expect(page.locator(f"#incident-{scene.own}")).to_have_count(0)
    check(page, site, "incident-holder-done")

    # the province's contact: another holder's token, stolen
    page.context.clear_cookies()
    login(page, site, "contact")
    set_lang(page, site, lang)
    box = page.locator(f"#incident-{scene.other}")
    box.locator("summary").click()
    box.locator("select[name=incident]").select_option("stolen")
    box.locator("textarea[name=note]").fill("Sac volé dans la voiture")
    box.locator("button[type=submit]").click()
    expect(page.locator("#flash")).to_contain_text(words["revoked"])
    status, replacement = _outcome(site.rt, scene.other)
    assert status == "revoked"
    assert replacement.kind == KIND_REPLACEMENT
    expect(page.locator(f"#request-{replacement.id}")).to_be_visible()
    expect(page.locator(f"#incident-{scene.other}")).to_have_count(0)
    check(page, site, "incident-contact-done")

    # a token personalised and not active yet, lost: reported all the same
    box = page.locator(f"#incident-{scene.early}")
    box.locator("summary").click()
    box.locator("select[name=incident]").select_option("lost")
    box.locator("textarea[name=note]").fill("Perdu avant la remise")
    box.locator("button[type=submit]").click()
    expect(page.locator("#flash")).to_contain_text(words["suspended"])
    status, replacement = _outcome(site.rt, scene.early)
    assert status == "suspended" and replacement.kind == KIND_REPLACEMENT
    with site.rt.unit_of_work() as session:
        assert session.get_one(CertificateRequest, scene.early).status == "replaced"
    expect(page.locator(f"#incident-{scene.early}")).to_have_count(0)

@pytest.mark.parametrize("lang", ["fr", "ar"])
def test_the_contact_reports_a_token_from_the_handover_area(page: Page, incident_site: Site,
                                                            lang: str) -> None:
    site, words = incident_site, WORDS[lang]
    scene: Scene = site.scene
    login(page, site, "contact")
    page.goto(f"{site.url}/web/province/{PROVINCE}")
    set_lang(page, site, lang)
    row = page.locator(f"#requests #request-{scene.other}")
    box = row.locator(f"#incident-handover-{scene.other}")
    box.locator("summary").click()
    check(page, site, "incident-handover-form")
    fits(page, shot="incident-handover-form")

    # without a note: refused beside the field of this form, in the page's language
    box.locator("select[name=incident]").select_option("damaged")
    box.locator("button[type=submit]").click()
    error = page.locator(f"#error-incident-handover-{scene.other}-note")
    expect(error).to_be_visible()
    expect(error).to_contain_text(words["note"])
    expect(page.locator(f"#incident-handover-{scene.other}")).to_have_attribute("open", "")
    expect(page.locator(f"#error-incident-{scene.other}-note")).to_have_count(0)
    check(page, site, "incident-handover-refused")
    with site.rt.unit_of_work() as session:
        assert session.scalars(select(CertificateRequest).filter_by(
            follows_request_id=scene.other)).all() == []

    box = page.locator(f"#incident-handover-{scene.other}")
    box.locator("select[name=incident]").select_option("damaged")
    box.locator("textarea[name=note]").fill("Jeton tombé dans l'eau à la remise")
    box.locator("button[type=submit]").click()
    expect(page.locator("#flash")).to_contain_text(words["suspended"])
    status, replacement = _outcome(site.rt, scene.other)
    assert status == "suspended"
    assert replacement.kind == KIND_REPLACEMENT and replacement.status == "submitted"
    with site.rt.unit_of_work() as session:
        events = session.scalars(select(AuditEvent.actor).where(
            AuditEvent.action == "delivery.token.damaged",
            AuditEvent.object_id == str(scene.other))).all()
        assert events == ["user:contact"]
    # the confirmation: the replacement is listed, the reported token has no form left
    expect(page.locator(f"#requests #request-{replacement.id}")).to_be_visible()
    expect(page.locator(f"#incident-handover-{scene.other}")).to_have_count(0)
    expect(page.locator(f"#incident-{scene.other}")).to_have_count(0)
    check(page, site, "incident-handover-done")

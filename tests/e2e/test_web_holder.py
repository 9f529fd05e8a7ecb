"""The holder's journey in the browser, in French and in Arabic, on the real token layer:
read the terms in both languages and accept them, change the hosted key's PIN (the initial
PIN read from the SMS the outbox worker sent), sign on the token with the new PIN, forget
it and reset it with the one-time code sent by SMS, sign with the PIN the reset sent,
confirm a new mobile with the code sent to it. Every page passes axe-core.

The credential is prepared by the domain services (the operator's pages are not built yet):
registered, requested, approved, personalised on SoftHSM2 with the test CA, activated.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from flask import Flask
from playwright.sync_api import Page, expect
from sqlalchemy import select

from api.app import create_app
from api.runtime import Runtime
from api.wiring import Wiring
from api.wiring.flaskapp import wiring as app_wiring
from delivery import holders, personalisation, requests
from delivery.backends import ConsoleInbox
from delivery.envelopes import Sealer
from delivery.models import CertificateRequest, Holder
from pki.issuance import HOLDER_KEY_LABEL
from pki.models import CertificateRecord
from tests.api.conftest import COMMUNE, make_user, provision_service_tokens
from tests.delivery.conftest import make_contact
from tests.e2e.conftest import SHOTS, Site, check, login, serve, set_lang

pytestmark = [pytest.mark.hsm,
              pytest.mark.parametrize("db_engine", ["sqlite"], indirect=True)]

SECRET = re.compile(r"(?<!\d)\d{6,8}(?!\d)")


@dataclass
class Hosted:
    request_id: int
    holder_id: int
    mobile: str
    label: str
    certificate: x509.Certificate
    sealer: Sealer


@pytest.fixture
def holder_app(api_runtime: Runtime) -> Flask:
    api_runtime.settings = api_runtime.settings.replace(rate_limit_pin="100/60",
                                                        rate_limit_otp="100/60")
    application = create_app(rt=api_runtime)
    application.testing = False
    return application


@pytest.fixture
def hosted_site(holder_app: Flask, api_runtime: Runtime) -> Iterator[Site]:
    rt, app = api_runtime, holder_app
    provision_service_tokens(rt)
    wiring = app_wiring(app)
    with app.app_context():
        personaliser, sealer = wiring.personaliser(), wiring.sealer()
    with rt.unit_of_work() as session:
        contact = make_contact(session, rt.clock, "01.051")
        holder = holders.register_holder(session, rt.clock, holders.HolderRegistration(
            cin="HB246810", given_name_fr="Hanane", surname_fr="Bouzidi",
            given_name_ar="حنان", surname_ar="بوزيدي", role="president",
            mobile="0662468101", email="h.bouzidi@example.ma", commune_code=COMMUNE),
            actor="contact", contact_id=contact.id)
        asked = requests.submit_request(session, rt.clock, contact_id=contact.id,
                                        holder_id=holder.id, token_form="hosted",
                                        actor="contact")
        requests.approve_request(session, rt.clock, asked.id, actor="operator",
                                 identity_check="CIN et PV vérifiés")
        done = personalisation.personalise_request(
            session, rt.clock, asked.id, personaliser=personaliser, sealer=sealer,
            actor="operator", policy=wiring.policy)
        requests.activate_request(session, rt.clock, asked.id, actor="holder")
        record = session.scalars(select(CertificateRecord).filter_by(
            serial=done.certificate_serial)).one()
        hosted = Hosted(asked.id, holder.id, holder.mobile, str(done.token_label),
                        x509.load_der_x509_certificate(record.der), sealer)
    make_user(rt, app, "hanane", "holder", holder_id=hosted.holder_id)
    with serve(app) as url:
        yield Site(url, rt, hosted, SHOTS)


def deliver(rt: Runtime) -> ConsoleInbox:
    inbox = ConsoleInbox()
    Wiring(rt).worker(inbox=inbox).drain()
    return inbox


def secret_in(inbox: ConsoleInbox, to: str) -> str:
    bodies = [body for channel, body in inbox.for_recipient(to) if channel == "sms"]
    assert bodies, inbox
    found = SECRET.findall(bodies[-1])
    assert found and len(set(found)) == 1, bodies[-1]
    return str(found[0])


def signs_with(site: Site, pin: str) -> None:
    hosted: Hosted = site.scene
    key = site.rt.tokens().private_key(hosted.label, pin, key_label=HOLDER_KEY_LABEL)
    document = b"permis d'habiter 2026/0042"
    signature = key.sign(document, ec.ECDSA(hashes.SHA256()))
    public = hosted.certificate.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    public.verify(signature, document, ec.ECDSA(hashes.SHA256()))


@pytest.mark.parametrize("lang", ["fr", "ar"])
def test_holder_journey(page: Page, hosted_site: Site, lang: str) -> None:
    site = hosted_site
    hosted: Hosted = site.scene
    initial = secret_in(deliver(site.rt), hosted.mobile)
    login(page, site, "hanane")
    expect(page).to_have_url(re.compile(r"/web/me$"))
    set_lang(page, site, lang)
    row = page.locator(f"#credential-{hosted.request_id}")
    expect(row).to_be_visible()
    check(page, site, "holder-me")

    # the terms, in both languages whatever the page's language
    row.locator("a.button").click()
    expect(page.locator("#terms-fr")).to_have_attribute("lang", "fr")
    expect(page.locator("#terms-ar")).to_have_attribute("dir", "rtl")
    check(page, site, "holder-terms")
    page.locator(f"#accept-{hosted.request_id} button").click()
    expect(page.locator("#flash")).to_be_visible()
    with site.rt.unit_of_work() as session:
        assert session.get_one(CertificateRequest, hosted.request_id).terms_version

    # change the PIN: a wrong current PIN is refused next to its field, in the language
    form = page.locator(f"#pin-{hosted.request_id}")
    new_pin = "47205813"
    form.locator("input[name=old_pin]").fill("00000000" if initial != "00000000" else "1")
    form.locator("input[name=new_pin]").fill(new_pin)
    form.locator("input[name=new_pin_again]").fill(new_pin)
    form.locator("button[type=submit]").click()
    expect(page.locator("#form-error")).to_be_visible()
    if lang == "ar":
        assert re.search(r"[\u0600-\u06FF]", page.locator("#form-error").inner_text())
    assert new_pin not in page.content()  # a PIN never comes back in a page
    check(page, site, "holder-pin-refused")
    form = page.locator(f"#pin-{hosted.request_id}")
    form.locator("input[name=old_pin]").fill(initial)
    form.locator("input[name=new_pin]").fill(new_pin)
    form.locator("input[name=new_pin_again]").fill(new_pin)
    form.locator("button[type=submit]").click()
    expect(page.locator("#flash")).to_be_visible()
    signs_with(site, new_pin)
    with site.rt.unit_of_work() as session:
        assert not session.get_one(CertificateRequest, hosted.request_id).pin_change_required

    # forgotten: reset with the one-time code sent by SMS; the new PIN comes by SMS
    page.locator("#reset-start button").click()
    expect(page.locator("#code-sent")).to_be_visible()
    check(page, site, "holder-reset-code")
    code = secret_in(deliver(site.rt), hosted.mobile)
    page.locator("#reset-confirm input[name=code]").fill(code)
    page.locator("#reset-confirm button").click()
    expect(page.locator("#flash")).to_be_visible()
    signs_with(site, secret_in(deliver(site.rt), hosted.mobile))

    # a new mobile asked by the contact: confirmed with the code sent to it
    with site.rt.unit_of_work() as session:
        holders.update_contact_details(session, site.rt.clock, hosted.holder_id,
                                       actor="contact", sealer=hosted.sealer,
                                       mobile="0662468109")
    page.goto(f"{site.url}/web/me")
    expect(page.locator("#change-sms")).to_be_visible()
    check(page, site, "holder-contact-change")
    code = secret_in(deliver(site.rt), "+212662468109")
    page.locator("#change-sms input[name=code]").fill(code)
    page.locator("#change-sms button").click()
    expect(page.locator("#flash")).to_be_visible()
    with site.rt.unit_of_work() as session:
        assert session.get_one(Holder, hosted.holder_id).mobile == "+212662468109"

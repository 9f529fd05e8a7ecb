"""The whole journey in one browser session per language, on the real token layer and CA,
with every SMS read from the local Twilio endpoint (the outbox worker sends through the
Twilio SDK):

1. the province's contact requests a hosted certificate for a registered holder;
2. the operator approves it (identity checked), personalises it and activates it, which
   sends the PIN;
3. the holder signs in with their CIN and the code sent by SMS, accepts the terms and
   changes the PIN, typing the PIN the SMS delivered;
4. the permits platform has a permit signed with the new PIN (the holder's code by SMS);
5. a citizen follows the stamp's QR code (read back from a render of the signed page) to
   the public status page, then drops the PDF on the verification page: valid.

Every page passes axe-core; no PIN or code ever appears in a page.
"""

from __future__ import annotations

import base64
import hashlib
import io
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from flask import Flask
from playwright.sync_api import Page, expect
from sqlalchemy import select

from api.app import create_app
from api.runtime import Runtime
from api.wiring import Wiring
from delivery import holders
from delivery.models import CertificateRequest
from pki.signing.pades import read_pdf
from pki.signing.stamp import qr_matrix
from tests.api.conftest import (
    COMMUNE,
    PROVINCE,
    PUBLIC_URL,
    make_platform,
    make_user,
    provision_service_tokens,
)
from tests.delivery.conftest import TwilioEndpoint, make_contact, random_cin, twilio_endpoint
from tests.e2e.conftest import SHOTS, Site, check, fits, login, serve, set_lang
from tests.e2e.test_web_verify import VALID, _drop
from tests.pki.test_pades import drawn_qr, with_quiet_zone
from tests.pki.test_pades_pki import permit_pdf

pytestmark = [pytest.mark.hsm,
              pytest.mark.parametrize("db_engine", ["sqlite"], indirect=True)]

__all__ = ["twilio_endpoint"]  # the fixture, used by name below

MOBILE = "+212662468123"
NEW_PIN = "58203174"
WORDS = {"fr": {"name": "Hanane Bouzidi", "title": "Signature électronique",
                "valid": "valide"},
         "ar": {"name": "حنان بوزيدي", "title": "توقيع إلكتروني", "valid": "صالحة"}}


@dataclass
class Journey:
    app: Flask
    twilio: TwilioEndpoint
    holder_id: int
    cin: str


@pytest.fixture
def journey_site(api_runtime: Runtime, twilio_endpoint: TwilioEndpoint,
                 request: pytest.FixtureRequest) -> Iterator[Site]:
    lang = request.node.callspec.params["lang"]
    rt = api_runtime
    rt.settings = rt.settings.replace(
        sms_backend="twilio", twilio_account_sid=twilio_endpoint.account_sid,
        twilio_auth_token=twilio_endpoint.auth_token, twilio_from="+212522000000",
        twilio_base_url=twilio_endpoint.base_url, rate_limit_pin="100/60",
        rate_limit_otp="100/60")
    app = create_app(rt=rt)
    app.testing = False
    provision_service_tokens(rt)
    cin = random_cin()
    with rt.unit_of_work() as session:
        contact = make_contact(session, rt.clock, PROVINCE)
        holder = holders.register_holder(session, rt.clock, holders.HolderRegistration(
            cin=cin, given_name_fr="Hanane", surname_fr="Bouzidi", given_name_ar="حنان",
            surname_ar="بوزيدي", role="president", civility="mrs", mobile=MOBILE,
            email="h.bouzidi@example.ma", commune_code=COMMUNE, preferred_lang=lang),
            actor="contact", contact_id=contact.id)
        holder_id = holder.id
    make_user(rt, app, "contact", "contact", province_code=PROVINCE)
    make_user(rt, app, "operator", "operator")
    with serve(app) as url:
        yield Site(url, rt, Journey(app, twilio_endpoint, holder_id, cin), SHOTS)


def sms(site: Site, pattern: str) -> str:
    """Run the outbox worker (Twilio SDK to the local endpoint), then read the newest SMS
    to the holder matching ``pattern``; its first group."""
    Wiring(site.rt).worker().drain()
    journey: Journey = site.scene
    for body in reversed(journey.twilio.bodies_to(MOBILE)):
        found = re.search(pattern, body)
        if found:
            return found.group(1)
    raise AssertionError(f"no SMS matching {pattern!r}: {journey.twilio.bodies_to(MOBILE)}")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def platform_signs(site: Site, serial: str, pin: str) -> tuple[bytes, str]:
    """The permits platform: the holder's code by SMS, then the PIN and the code for this
    PDF, then signDoc (B-LT, visible stamp). Returns the signed PDF and its status path."""
    journey: Journey = site.scene
    platform = make_platform(site.rt)
    client = journey.app.test_client()
    sent = client.post("/csc/v2/credentials/sendOTP", headers=platform.headers,
                       json={"credentialID": serial})
    assert sent.status_code == 200, sent.get_json()
    code = sms(site, r"^(\d{6})\s?:")
    document = permit_pdf("Permis d'habiter n° 2026/0777")
    granted = client.post("/csc/v2/credentials/authorize", headers=platform.headers, json={
        "credentialID": serial, "PIN": pin, "OTP": code,
        "documentDigests": [_b64(hashlib.sha256(document).digest())]})
    assert granted.status_code == 200, granted.get_json()
    signed = client.post("/csc/v2/signatures/signDoc", headers=platform.headers,
                         content_type="multipart/form-data", data={
                             "credentialID": serial, "SAD": granted.get_json()["SAD"],
                             "conformance_level": "AdES-B-LT",
                             "document": (io.BytesIO(document), "permis.pdf")})
    assert signed.status_code == 200, signed.get_json()
    return signed.data, signed.headers["X-Signature-Status"]


@pytest.mark.parametrize("lang", ["fr", "ar"])
def test_from_the_request_to_the_verified_permit(page: Page, journey_site: Site, lang: str,
                                                tmp_path: Path) -> None:
    site, words = journey_site, WORDS[lang]
    journey: Journey = site.scene

    # 1. the contact requests a hosted certificate for the holder
    login(page, site, "contact")
    page.goto(f"{site.url}/web/province/{PROVINCE}")
    set_lang(page, site, lang)
    form = page.locator("#form-request")
    form.locator("select[name=holder_id]").select_option(str(journey.holder_id))
    form.locator("select[name=token_form]").select_option("hosted")
    check(page, site, "journey-contact-request")
    form.locator("button[type=submit]").click()
    expect(page.locator("#flash")).to_be_visible()
    with site.rt.unit_of_work() as session:
        request_id = session.scalars(select(CertificateRequest.id).filter_by(
            holder_id=journey.holder_id)).one()
    expect(page.locator(f"#requests #request-{request_id}")).to_be_visible()
    check(page, site, "journey-contact-requested")

    # 2. the operator approves, personalises and activates it: the PIN goes by SMS
    page.context.clear_cookies()
    login(page, site, "operator")
    set_lang(page, site, lang)
    for action in ("approve", "personalise", "activate"):
        page.goto(f"{site.url}/web/requests?q={journey.cin}")
        page.check(f"#result-{request_id} input[type=checkbox]")
        if action == "approve":
            page.select_option("#bulk select[name=document]", "cin")
        page.click(f"#bulk-{action}")
        expect(page.locator(f"#outcome-{request_id}")).to_have_class("ok")
        check(page, site, f"journey-operator-{action}")
    with site.rt.unit_of_work() as session:
        found = session.get_one(CertificateRequest, request_id)
        assert found.status == "active" and found.token_form == "hosted"
        serial = str(found.certificate_serial)
    delivered = sms(site, r"^(\d{6,8})\s?:")
    assert journey.twilio.bodies_to(MOBILE)[-1].startswith(delivered)  # the code first

    # 3. the holder signs in with the CIN and a code by SMS, accepts the terms, changes
    # the PIN with the one delivered
    page.context.clear_cookies()
    page.goto(f"{site.url}/web/signin")
    set_lang(page, site, lang)
    page.fill("#signin-cin input[name=cin]", journey.cin)
    page.click("#signin-cin button[type=submit]")
    expect(page.locator("#code-sent")).to_be_visible()
    code = sms(site, r"^(\d{6})\s?:")
    page.fill("#signin-code input[name=code]", code)
    page.click("#signin-code button[type=submit]")
    expect(page).to_have_url(re.compile(r"/web/me$"))
    row = page.locator(f"#credential-{request_id}")
    expect(row).to_be_visible()
    check(page, site, "journey-holder-me")
    row.locator("a.button").click()
    page.locator(f"#accept-{request_id} button").click()
    expect(page.locator("#flash")).to_be_visible()
    pin_form = page.locator(f"#pin-{request_id}")
    pin_form.locator("input[name=old_pin]").fill(delivered)
    pin_form.locator("input[name=new_pin]").fill(NEW_PIN)
    pin_form.locator("input[name=new_pin_again]").fill(NEW_PIN)
    pin_form.locator("button[type=submit]").click()
    expect(page.locator("#flash")).to_be_visible()
    for secret in (delivered, code, NEW_PIN):
        assert secret not in page.content()
    check(page, site, "journey-holder-pin-changed")
    with site.rt.unit_of_work() as session:
        found = session.get_one(CertificateRequest, request_id)
        assert found.terms_version and not found.pin_change_required

    # 4. the platform has a permit signed with the new PIN (pyHanko runs its own event
    # loop: not in this thread, where Playwright's runs)
    with ThreadPoolExecutor(1) as pool:
        pdf, path = pool.submit(platform_signs, site, serial, NEW_PIN).result()

    # 5. the stamp's QR code leads to the public status page, which leads to the check
    (signature,) = read_pdf(pdf, max_bytes=10**8).embedded_regular_signatures
    box = tuple(float(v) for v in signature.sig_field["/Rect"])
    assert drawn_qr(pdf, box, tmp_path) == with_quiet_zone(qr_matrix(PUBLIC_URL + path))
    page.context.clear_cookies()
    page.goto(site.url + path)  # what a phone opens from the QR code, without login
    expect(page).to_have_url(re.compile(r"/web/s/[A-Za-z0-9_-]{22}$"))
    set_lang(page, site, lang)
    expect(page.locator("h1")).to_have_text(words["title"])
    panel = page.locator("#signature-status")
    expect(panel.locator("#certificate-status")).to_have_text(words["valid"])
    expect(panel.locator("h2")).to_contain_text(words["name"])
    assert journey.cin not in page.content()
    check(page, site, "journey-status")
    fits(page, shot="journey-status")
    page.click("#check-link")
    expect(page).to_have_url(re.compile(r"/web/verify$"))
    _drop(page, "permis.pdf", pdf)
    expect(page.locator("#signature-1")).to_contain_text(VALID[lang])
    check(page, site, "journey-verified")

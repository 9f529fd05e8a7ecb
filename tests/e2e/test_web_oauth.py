"""The OAuth 2.0 code flow in Chromium, in French and in Arabic: the permits platform sends
the holder to /oauth2/authorize; the Tawqi page shows the document's name, the number of
signatures and the hashes; the holder asks for the SMS code, types it with the PIN, and the
browser lands on the platform's redirect URI with the code; the platform exchanges it with
its PKCE verifier and signs exactly those hashes. Every page passes axe-core."""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from flask import Flask
from playwright.sync_api import Page, Route, expect

from api.runtime import Runtime
from pki.signing.oauth import register_redirect, s256
from tests.api.conftest import Caller, make_platform
from tests.api.test_csc import Hosted, Sms, make_hosted
from tests.e2e.conftest import SHOTS, Site, check, serve, set_lang

pytestmark = [pytest.mark.hsm,
              pytest.mark.parametrize("db_engine", ["sqlite"], indirect=True)]

REDIRECT = "https://permis.example.ma/oauth/callback"


@dataclass
class Scene:
    hosted: Hosted
    sms: Sms
    platform: Caller


@pytest.fixture
def oauth_site(app: Flask, api_runtime: Runtime) -> Iterator[Site]:
    sms = Sms(api_runtime, app)
    hosted = make_hosted(api_runtime, app, sms)
    platform = make_platform(api_runtime)
    with api_runtime.unit_of_work() as session:
        register_redirect(session, api_runtime.clock, f"apikey:{platform.principal_id}",
                          REDIRECT, actor="test")
    with serve(app) as url:
        yield Site(url, api_runtime, Scene(hosted, sms, platform), SHOTS)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


@pytest.mark.parametrize("lang", ["fr", "ar"])
def test_holder_authorises_on_the_page(page: Page, oauth_site: Site, app: Flask,
                                       lang: str) -> None:
    site, scene = oauth_site, oauth_site.scene
    landed: list[str] = []

    def platform_callback(route: Route) -> None:
        landed.append(route.request.url)
        route.fulfill(status=200, content_type="text/plain", body="ok")

    page.route(REDIRECT + "*", platform_callback)
    digests = [hashlib.sha256(f"plan {i}".encode()).digest() for i in range(2)]
    verifier = secrets.token_urlsafe(48)
    params = {"response_type": "code", "client_id": scene.platform.token.split("_")[1],
              "redirect_uri": REDIRECT, "scope": "credential",
              "code_challenge": s256(verifier), "code_challenge_method": "S256",
              "state": "xyz", "credentialID": scene.hosted.serial, "numSignatures": "2",
              "hashes": ",".join(_b64url(d) for d in digests),
              "description": "Permis de construire n° 2026/0400"}
    page.goto(f"{site.url}/oauth2/authorize?{urlencode(params)}")
    set_lang(page, site, lang)
    expect(page.locator("#oauth-document")).to_contain_text("Permis de construire n° 2026/0400")
    expect(page.locator("#oauth-count")).to_have_text("2")
    expect(page.locator("#oauth-hashes li")).to_have_count(2)
    if lang == "ar":
        expect(page.locator("html")).to_have_attribute("dir", "rtl")
    check(page, site, "oauth-authorize")
    page.locator("#oauth-send button").click()
    expect(page.locator("#flash")).to_be_visible()
    code = scene.sms.read(scene.hosted.mobile, r"(\d{6}) : code de signature")
    # a wrong PIN first: said on the page, in the page's language, never echoed
    wrong = "000000" if scene.hosted.pin != "000000" else "111111"
    page.locator("#oauth-authorize input[name=pin]").fill(wrong)
    page.locator("#oauth-authorize input[name=otp]").fill(code)
    page.locator("#oauth-authorize button").click()
    expect(page.locator("#form-error")).to_be_visible()
    assert wrong not in page.content() and code not in page.content()
    check(page, site, "oauth-refused")
    page.locator("#oauth-send button").click()
    expect(page.locator("#flash")).to_be_visible()
    code = scene.sms.read(scene.hosted.mobile, r"(\d{6}) : code de signature")
    page.locator("#oauth-authorize input[name=pin]").fill(scene.hosted.pin)
    page.locator("#oauth-authorize input[name=otp]").fill(code)
    page.locator("#oauth-authorize button").click()
    page.wait_for_url(REDIRECT + "*")
    found = parse_qs(urlsplit(landed[-1]).query)
    assert found["state"] == ["xyz"]
    # the platform's side: the code and the verifier give the SAD for those hashes
    client = app.test_client()
    token = client.post("/oauth2/token", data={
        "grant_type": "authorization_code", "code": found["code"][0],
        "redirect_uri": REDIRECT, "code_verifier": verifier,
        "client_secret": scene.platform.token})
    assert token.status_code == 200, token.get_json()
    signed = client.post("/csc/v2/signatures/signHash", headers=scene.platform.headers, json={
        "credentialID": scene.hosted.serial, "SAD": token.get_json()["access_token"],
        "hashes": [base64.b64encode(d).decode() for d in digests]})
    assert signed.status_code == 200, signed.get_json()
    assert len(signed.get_json()["signatures"]) == 2

"""OAuth 2.0 authorisation code with PKCE for the CSC credential scope, over HTTP: the
holder's page driven as a browser posts it (cookies, CSRF token), the code exchanged at
``/oauth2/token``, the token used as the SAD of ``signatures/signHash``; and the refusals:
a wrong verifier, a reused code, another client, hashes the token was not bound to, an
unregistered redirect URI, a request without PKCE. (The page in Chromium, with axe:
tests/e2e/test_web_oauth.py.)"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import secrets
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, utils
from flask.testing import FlaskClient
from sqlalchemy import select
from werkzeug.test import TestResponse

from api.runtime import Runtime
from core.audit import AuditEvent
from pki.signing.oauth import register_redirect, s256
from tests.api.conftest import Caller, db_session, make_platform
from tests.api.test_csc import Hosted, Sms, hosted, platform, sms  # noqa: F401
from tests.secrets_at_rest import assert_kept_secret

REDIRECT = "https://permis.example.ma/oauth/callback"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def client_id(caller: Caller) -> str:
    return caller.token.split("_")[1]


def register(rt: Runtime, caller: Caller, uri: str = REDIRECT) -> None:
    with rt.unit_of_work() as session:
        register_redirect(session, rt.clock, f"apikey:{caller.principal_id}", uri,
                          actor="test")


def query(caller: Caller, owner: Hosted, digests: list[bytes], verifier: str, **extra: str
          ) -> dict[str, str]:
    params = {"response_type": "code", "client_id": client_id(caller),
              "redirect_uri": REDIRECT, "scope": "credential",
              "code_challenge": s256(verifier), "code_challenge_method": "S256",
              "state": "st-42", "credentialID": owner.serial,
              "numSignatures": str(len(digests)),
              "hashes": ",".join(_b64url(d) for d in digests),
              "hashAlgorithmOID": "2.16.840.1.101.3.4.2.1",
              "description": "Permis de construire n° 2026/0300"}
    params.update(extra)
    return params


def post_page(client: FlaskClient, params: dict[str, str], page: TestResponse,
              **fields: str) -> TestResponse:
    token = CSRF.search(page.get_data(as_text=True))
    assert token, page.get_data(as_text=True)[:500]
    return client.post("/web/oauth2/authorize",
                       data={**params, "csrf_token": token.group(1), **fields})


def holder_code(client: FlaskClient, params: dict[str, str], owner: Hosted, phone: Sms,
                pin: str | None = None) -> TestResponse:
    """What the holder does on the page: ask for the code, type the PIN and the code."""
    start = client.get("/oauth2/authorize?" + urlencode(params))
    assert start.status_code == 302 and start.location.startswith("/web/oauth2/authorize?")
    page = client.get(start.location)
    assert page.status_code == 200, page.get_data(as_text=True)[:500]
    text = page.get_data(as_text=True)
    assert "Permis de construire n° 2026/0300" in text
    sent = post_page(client, params, page, action="send")
    assert sent.status_code == 200, sent.get_data(as_text=True)[:500]
    code = phone.read(owner.mobile, r"(\d{6}) : code de signature")
    return post_page(client, params, sent, action="authorize", pin=pin or owner.pin,
                     otp=code)


def code_of(answer: TestResponse) -> str:
    assert answer.status_code == 303, answer.get_data(as_text=True)[:800]
    found = parse_qs(urlsplit(answer.location).query)
    assert answer.location.startswith(REDIRECT) and found["state"] == ["st-42"]
    return found["code"][0]


def authorised(client: FlaskClient, rt: Runtime, caller: Caller, owner: Hosted, phone: Sms,
               digests: list[bytes]) -> tuple[str, str]:
    """The redirect URI registered, the holder authorises ``digests`` on the page: the code
    the platform receives, and its PKCE verifier."""
    register(rt, caller)
    verifier = secrets.token_urlsafe(48)
    return code_of(holder_code(client, query(caller, owner, digests, verifier), owner,
                               phone)), verifier


def exchange(client: FlaskClient, caller: Caller, code: str, verifier: str) -> TestResponse:
    return client.post("/oauth2/token", data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
        "code_verifier": verifier, "client_id": client_id(caller),
        "client_secret": caller.token})


def sign(client: FlaskClient, caller: Caller, owner: Hosted, sad: str,
         digests: list[bytes]) -> TestResponse:
    return client.post("/csc/v2/signatures/signHash", headers=caller.headers, json={
        "credentialID": owner.serial, "SAD": sad, "hashes": [_b64(d) for d in digests],
        "hashAlgorithmOID": "2.16.840.1.101.3.4.2.1"})


def test_code_flow_signs_what_the_holder_saw(client: FlaskClient, platform: Caller,  # noqa: F811
                                             hosted: Hosted, sms: Sms,  # noqa: F811
                                             api_runtime: Runtime) -> None:
    digests = [hashlib.sha256(f"plan {i}".encode()).digest() for i in range(2)]
    code, verifier = authorised(client, api_runtime, platform, hosted, sms, digests)
    granted = exchange(client, platform, code, verifier)
    assert granted.status_code == 200, granted.get_json()
    token = granted.get_json()
    assert token["credentialID"] == hosted.serial and token["numSignatures"] == 2
    assert 0 < token["expires_in"] <= 300 and granted.headers["Cache-Control"] == "no-store"
    signed = sign(client, platform, hosted, token["access_token"], digests)
    assert signed.status_code == 200, signed.get_json()
    info = client.post("/csc/v2/credentials/info", headers=platform.headers,
                       json={"credentialID": hosted.serial}).get_json()
    public = x509.load_der_x509_certificate(
        base64.b64decode(info["cert"]["certificates"][0])).public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    for digest, signature in zip(digests, signed.get_json()["signatures"], strict=True):
        public.verify(base64.b64decode(signature), digest,
                      ec.ECDSA(utils.Prehashed(hashes.SHA256())))
    # the code is single use: a second exchange is refused
    again = exchange(client, platform, code, verifier)
    assert again.status_code == 400 and again.get_json()["error"] == "invalid_grant"


def test_wrong_verifier_spends_the_code(client: FlaskClient, platform: Caller,  # noqa: F811
                                        hosted: Hosted, sms: Sms,  # noqa: F811
                                        api_runtime: Runtime) -> None:
    digests = [hashlib.sha256(b"plan").digest()]
    code, verifier = authorised(client, api_runtime, platform, hosted, sms, digests)
    wrong = exchange(client, platform, code, secrets.token_urlsafe(48))
    assert wrong.status_code == 400
    assert wrong.get_json()["error"] == "invalid_grant"
    assert code not in wrong.get_data(as_text=True)
    late = exchange(client, platform, code, verifier)
    assert late.status_code == 400 and late.get_json()["error"] == "invalid_grant"


def test_reused_code_revokes_the_token(client: FlaskClient, platform: Caller,  # noqa: F811
                                       hosted: Hosted, sms: Sms,  # noqa: F811
                                       api_runtime: Runtime) -> None:
    digests = [hashlib.sha256(b"plan").digest()]
    code, verifier = authorised(client, api_runtime, platform, hosted, sms, digests)
    first = exchange(client, platform, code, verifier)
    assert first.status_code == 200
    assert exchange(client, platform, code, verifier).status_code == 400
    # RFC 6749 §4.1.2: what the code gave is revoked once it is presented twice
    refused = sign(client, platform, hosted, first.get_json()["access_token"], digests)
    assert refused.status_code == 403, refused.get_json()


def test_token_is_bound_to_client_and_hashes(client: FlaskClient, platform: Caller,  # noqa: F811
                                            hosted: Hosted, sms: Sms,  # noqa: F811
                                            api_runtime: Runtime) -> None:
    other = make_platform(api_runtime)
    digests = [hashlib.sha256(b"plan").digest()]
    code, verifier = authorised(client, api_runtime, platform, hosted, sms, digests)
    stolen = exchange(client, other, code, verifier)
    assert stolen.status_code == 400 and stolen.get_json()["error"] == "invalid_grant"
    code = code_of(holder_code(client, query(platform, hosted, digests, verifier),
                               hosted, sms))
    bad_secret = client.post("/oauth2/token", data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
        "code_verifier": verifier, "client_id": client_id(platform),
        "client_secret": other.token})
    assert bad_secret.status_code == 401
    assert bad_secret.get_json()["error"] == "invalid_client"
    token = exchange(client, platform, code, verifier).get_json()["access_token"]
    not_bound = sign(client, platform, hosted, token, [hashlib.sha256(b"other").digest()])
    assert not_bound.status_code == 403
    assert not_bound.get_json()["type"].endswith("/signing-sad-mismatch")


def test_refusals_before_the_code(client: FlaskClient, platform: Caller,  # noqa: F811
                                  hosted: Hosted, sms: Sms,  # noqa: F811
                                  api_runtime: Runtime) -> None:
    register(api_runtime, platform)
    digests = [hashlib.sha256(b"plan").digest()]
    verifier = secrets.token_urlsafe(48)
    # an unregistered redirect URI: an error page, nobody is redirected
    page = client.get("/web/oauth2/authorize?" + urlencode(
        query(platform, hosted, digests, verifier, redirect_uri="https://evil.example/cb")))
    assert page.status_code == 400 and page.location is None
    # no PKCE: back to the client with invalid_request
    no_pkce = client.get("/web/oauth2/authorize?" + urlencode(
        query(platform, hosted, digests, verifier, code_challenge="")))
    assert no_pkce.status_code == 303
    assert parse_qs(urlsplit(no_pkce.location).query)["error"] == ["invalid_request"]
    # the holder refuses
    params = query(platform, hosted, digests, verifier)
    shown = client.get("/web/oauth2/authorize?" + urlencode(params))
    denied = post_page(client, params, shown, action="deny")
    assert denied.status_code == 303
    found = parse_qs(urlsplit(denied.location).query)
    assert found["error"] == ["access_denied"] and found["state"] == ["st-42"]
    # a wrong PIN is said on the page, and no code is issued
    wrong = holder_code(client, params, hosted, sms,
                        pin="000000" if hosted.pin != "000000" else "111111")
    assert wrong.status_code == 403 and wrong.location is None
    assert hosted.pin not in wrong.get_data(as_text=True)
    # the token endpoint refuses other grants
    other = client.post("/oauth2/token", data={"grant_type": "password"})
    assert other.status_code == 400 and other.get_json()["error"] == "unsupported_grant_type"


def test_codes_are_audited_and_kept_nowhere_in_clear(
        client: FlaskClient, platform: Caller, hosted: Hosted, sms: Sms,  # noqa: F811
        api_runtime: Runtime, caplog: pytest.LogCaptureFixture) -> None:
    """Issuing, using and spending a code each write an audit event; the code, its PKCE
    verifier, the token (SAD) it gave and the holder's PIN are in no row of the database
    (the code as a SHA-256, the SAD sealed under a key derived from the code) and in no log
    line."""
    caplog.set_level(logging.DEBUG)
    digests = [hashlib.sha256(b"plan").digest()]
    code, verifier = authorised(client, api_runtime, platform, hosted, sms, digests)
    token = exchange(client, platform, code, verifier).get_json()["access_token"]
    assert sign(client, platform, hosted, token, digests).status_code == 200
    spent, spent_verifier = authorised(client, api_runtime, platform, hosted, sms, digests)
    assert exchange(client, platform, spent, secrets.token_urlsafe(48)).status_code == 400
    with db_session(api_runtime) as session:
        actions = session.scalars(select(AuditEvent.action).where(
            AuditEvent.action.like("signing.oauth.code_%")).order_by(AuditEvent.seq)).all()
        assert actions == ["signing.oauth.code_issued", "signing.oauth.code_used",
                           "signing.oauth.code_issued", "signing.oauth.code_refused"]
        assert "SMS to " in caplog.text  # the log is captured: the code went out masked
        assert_kept_secret(session, caplog.text, code, verifier, token, spent,
                           spent_verifier, hosted.pin)

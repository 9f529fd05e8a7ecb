"""A hosted token's PIN through HTTP, on the real token layer (SoftHSM2).

The holder's token is personalised through the API by the app's own collaborators (key
generated on the token, certificate from the test's CA, PIN sealed on the envelope token);
PINs and one-time codes reach the holder the way they do in production, through the outbox
worker, and are read here from the console backends' captured messages. What the API
changed is then checked on the token itself: a signature with the PIN, verified against the
certificate the API serves.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from flask import Flask
from flask.testing import FlaskClient

from api.app import create_app
from api.runtime import Runtime
from api.wiring import Wiring
from delivery import requests
from delivery.backends import ConsoleInbox
from hsm import PinIncorrect, TokenLibrary
from pki.issuance import HOLDER_KEY_LABEL
from tests.api.conftest import COMMUNE, Caller, make_user
from tests.api.world import World, build

pytestmark = pytest.mark.hsm

SECRET = re.compile(r"(?<!\d)\d{6,8}(?!\d)")


@pytest.fixture
def app(api_runtime: Runtime) -> Flask:
    # Room for five wrong PINs and a reset from one address; the limits have tests of their
    # own (test_scopes.py).
    api_runtime.settings = api_runtime.settings.replace(rate_limit_pin="100/60",
                                                        rate_limit_otp="100/60")
    application = create_app(rt=api_runtime)
    application.testing = False
    return application


@pytest.fixture
def world(api_runtime: Runtime, app: Flask, callers: dict[str, Caller]) -> World:
    return build(api_runtime, app, callers)


@dataclass
class Credential:
    request_id: int
    holder: dict[str, str]  # the holder's authorisation header
    cin: str
    mobile: str
    email: str
    label: str
    certificate: x509.Certificate
    initial_pin: str


def ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, (response.status_code, response.get_data(True))
    return response.get_json()


def kind(response: Any) -> str:
    return str(response.get_json()["type"]).rsplit("/", 1)[-1]


def deliver(rt: Runtime) -> ConsoleInbox:
    """Run the outbox worker the settings describe (console backends) until nothing is due;
    return what it sent."""
    inbox = ConsoleInbox()
    Wiring(rt).worker(inbox=inbox).drain()
    return inbox


def secret_in(inbox: ConsoleInbox, to: str, channel: str = "sms") -> str:
    bodies = [body for ch, body in inbox.for_recipient(to) if ch == channel]
    assert len(bodies) == 1, bodies
    found = SECRET.findall(bodies[0])
    assert found and len(set(found)) == 1, bodies[0]  # French and Arabic: the same secret
    return str(found[0])


def hosted_credential(client: FlaskClient, rt: Runtime, app: Flask,
                      callers: dict[str, Caller]) -> Credential:
    """A president's hosted token, from registration to activation, all through HTTP; the
    initial PIN read from the SMS the worker sent."""
    contact, operator = callers["contact"].headers, callers["operator"].headers
    holder = ok(client.post("/v1/holders", json={
        "cin": "HB246810", "given_name_fr": "Hanane", "surname_fr": "Bouzidi",
        "given_name_ar": "حنان", "surname_ar": "بوزيدي", "role": "president",
        "mobile": "0662468101", "email": "h.bouzidi@example.ma", "commune_code": COMMUNE},
        headers=contact), 201)
    user = make_user(rt, app, "hanane.bouzidi", "holder", holder_id=holder["id"])
    request_id = ok(client.post("/v1/requests", json={"holder_id": holder["id"],
                                                      "token_form": "hosted"},
                                headers=contact), 201)["id"]
    ok(client.post(f"/v1/requests/{request_id}/approve",
                   json={"identity_check": "CIN and council minutes checked"},
                   headers=operator))
    personalised = ok(client.post(f"/v1/requests/{request_id}/personalise",
                                  headers=operator))
    ok(client.post(f"/v1/requests/{request_id}/activate", headers=user.headers))
    ok(client.post(f"/v1/requests/{request_id}/terms", json={"version": "2026-01"},
                   headers=user.headers))
    der = client.get(f"/v1/certificates/{personalised['certificate_serial']}/der",
                     headers=user.headers)
    assert der.status_code == 200
    with rt.unit_of_work() as session:
        label = str(requests.get_request(session, request_id).token_label)
    pin = secret_in(deliver(rt), holder["mobile"])
    return Credential(request_id, user.headers, holder["cin"], holder["mobile"],
                      holder["email"], label, x509.load_der_x509_certificate(der.data), pin)


def sign_with(tokens: TokenLibrary, credential: Credential, pin: str) -> None:
    """Sign on the holder's token with ``pin`` and verify with the served certificate."""
    key = tokens.private_key(credential.label, pin, key_label=HOLDER_KEY_LABEL)
    document = f"permis de construire n° 2026/{credential.request_id:04d}".encode()
    signature = key.sign(document, ec.ECDSA(hashes.SHA256()))
    public = credential.certificate.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    public.verify(signature, document, ec.ECDSA(hashes.SHA256()))
    assert public == key.public_key()


def readiness(client: FlaskClient, credential: Credential) -> tuple[bool, list[str]]:
    detail = ok(client.get(f"/v1/requests/{credential.request_id}",
                           headers=credential.holder))
    return detail["ready_to_sign"], detail["not_ready_reasons"]


def test_holder_changes_a_hosted_pin_then_signs_with_it(
        client: FlaskClient, api_runtime: Runtime, app: Flask, callers: dict[str, Caller],
        world: World) -> None:
    tokens = api_runtime.tokens()
    credential = hosted_credential(client, api_runtime, app, callers)
    ready, reasons = readiness(client, credential)
    assert not ready and any("PIN" in r for r in reasons), reasons

    new_pin = "47205813"
    url = f"/v1/requests/{credential.request_id}/pin"
    weak = client.post(url, json={"old_pin": credential.initial_pin, "new_pin": "123456"},
                       headers=credential.holder)
    assert (weak.status_code, kind(weak)) == (422, "delivery-pin-policy")
    changed = client.post(url, json={"old_pin": credential.initial_pin, "new_pin": new_pin},
                          headers=credential.holder)
    assert changed.status_code == 204, changed.get_data(True)
    assert readiness(client, credential) == (True, [])

    sign_with(tokens, credential, new_pin)
    with pytest.raises(PinIncorrect):
        tokens.private_key(credential.label, credential.initial_pin,
                           key_label=HOLDER_KEY_LABEL)
    # The old PIN no longer changes anything; the token counted the wrong guess.
    stale = client.post(url, json={"old_pin": credential.initial_pin, "new_pin": "58136024"},
                        headers=credential.holder)
    assert (stale.status_code, kind(stale)) == (403, "delivery-pin-rejected")
    assert stale.get_json()["attempts_left"] == 3
    sign_with(tokens, credential, new_pin)
    # No PIN in any response of the story.
    assert new_pin not in changed.get_data(as_text=True) + stale.get_data(as_text=True)


def test_pin_reset_with_the_code_gives_a_pin_that_works_on_the_token(
        client: FlaskClient, api_runtime: Runtime, app: Flask, callers: dict[str, Caller],
        world: World) -> None:
    tokens = api_runtime.tokens()
    credential = hosted_credential(client, api_runtime, app, callers)
    url = f"/v1/requests/{credential.request_id}/pin"

    # Five wrong PINs lock the token.
    statuses = [client.post(url, json={"old_pin": "90817263", "new_pin": "47205813"},
                            headers=credential.holder).status_code for _ in range(5)]
    assert statuses == [403, 403, 403, 403, 423]
    assert tokens.is_locked(credential.label)

    # Forgotten PIN: a one-time code by SMS.
    asked = ok(client.post("/v1/pin-reset", json={"cin": credential.cin},
                           headers=credential.holder), 201)
    assert asked["phone_hint"] == credential.mobile[-4:]
    code = secret_in(deliver(api_runtime), credential.mobile)
    confirm = f"/v1/pin-reset/{asked['challenge_id']}/confirm"
    wrong = "000000" if code != "000000" else "111111"
    refused = client.post(confirm, json={"cin": credential.cin, "code": wrong},
                          headers=credential.holder)
    assert (refused.status_code, kind(refused)) == (403, "delivery-reset-invalid")
    done = ok(client.post(confirm, json={"cin": credential.cin, "code": code},
                          headers=credential.holder))
    assert done == {"request_id": credential.request_id,
                    "phone_hint": credential.mobile[-4:]}
    again = client.post(confirm, json={"cin": credential.cin, "code": code},
                        headers=credential.holder)
    assert (again.status_code, kind(again)) == (409, "delivery-reset-closed")

    # The new PIN arrives by SMS only; the email is a notice without it.
    inbox = deliver(api_runtime)
    reset_pin = secret_in(inbox, credential.mobile)
    notices = [body for ch, body in inbox.for_recipient(credential.email) if ch == "email"]
    assert len(notices) == 1 and reset_pin not in notices[0]
    assert reset_pin != credential.initial_pin

    # It works on the token: the lock is gone and the key signs with it.
    assert not tokens.is_locked(credential.label)
    sign_with(tokens, credential, reset_pin)
    ready, reasons = readiness(client, credential)
    assert not ready and any("PIN" in r for r in reasons), reasons

    # The holder sets their own PIN with it, through the API, and signs again.
    own_pin = "63920475"
    changed = client.post(url, json={"old_pin": reset_pin, "new_pin": own_pin},
                          headers=credential.holder)
    assert changed.status_code == 204, changed.get_data(True)
    assert readiness(client, credential) == (True, [])
    sign_with(tokens, credential, own_pin)
    assert set(asked) == {"challenge_id", "expires_at", "phone_hint"}  # never the code


def test_another_holder_cannot_spend_a_reset_challenge(
        client: FlaskClient, api_runtime: Runtime, app: Flask, callers: dict[str, Caller],
        world: World) -> None:
    """Holder B learnt holder A's challenge id: B's confirmations are "not found" and use up
    none of A's attempts."""
    credential = hosted_credential(client, api_runtime, app, callers)
    asked = ok(client.post("/v1/pin-reset", json={"cin": credential.cin},
                           headers=credential.holder), 201)
    code = secret_in(deliver(api_runtime), credential.mobile)
    confirm = f"/v1/pin-reset/{asked['challenge_id']}/confirm"
    other = callers["holder"]
    for guess in ("000000", "111111", "222222", "333333", "444444", "555555", code):
        stolen = client.post(confirm, json={"cin": world.holder_here_cin, "code": guess},
                             headers=other.headers)
        assert (stolen.status_code, kind(stolen)) == (404, "delivery-reset-not-found")
    wrong = "000000" if code != "000000" else "111111"
    refused = client.post(confirm, json={"cin": credential.cin, "code": wrong},
                          headers=credential.holder)
    assert (refused.status_code, kind(refused)) == (403, "delivery-reset-invalid")
    assert refused.get_json()["attempts_left"] == 4  # only A's own guess counted
    ok(client.post(confirm, json={"cin": credential.cin, "code": code},
                   headers=credential.holder))

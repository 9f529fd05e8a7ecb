"""The whole journey of a certificate through HTTP only: request -> active.

Bootstrap (not through HTTP, as an installer would: migrations, reference data, the CA on
SoftHSM2, the envelope key, the first administrator). Then every step is an HTTP call by
the actor who does it in real life:

administrator creates the accounts -> operator registers the province's contact -> contact
registers a commune president -> contact asks for a device token (quota reserved) ->
operator approves and personalises (key generated on the token, certificate issued) ->
operator ships the province's batch -> contact receives it and hands the token over (PIN
notice queued) -> the president accepts the terms, declares the PIN changed, activates
(quota consumed) -> the president sees their certificate; the audit chain verifies.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from api import accounts
from api.app import create_app
from api.runtime import Runtime
from core.clock import FrozenClock
from core.config import Settings
from core.db import make_engine
from delivery.envelopes import provision_envelope_key
from hsm import TokenLibrary, generate_pin
from pki import ca
from pki.profiles import DOCUMENTATION_POLICY_OID, Profile
from tests.conftest import FROZEN_AT, prepare_database

pytestmark = pytest.mark.hsm

PROVINCE = "01.051"
COMMUNE = "01.051.01.05"  # Imzouren: 4 certificates a year under the 2024 census
ADMIN_PASSWORD = "bootstrap administrator passphrase"


@dataclass
class Stack:
    client: FlaskClient
    rt: Runtime
    library: TokenLibrary


@pytest.fixture
def stack(tmp_path: Path, softhsm_conf: Path, softhsm_module_path: str) -> Iterator[Stack]:
    """The server as an installer leaves it: its own database, this test's SoftHSM2 token
    directory, the service PINs in the settings, and the app building everything else
    (token library with the database PIN counter, CA authority, sealer, personaliser)."""
    engine = make_engine(f"sqlite:///{tmp_path / 'tawqi.db'}")
    prepare_database(engine)
    clock = FrozenClock(FROZEN_AT)
    settings = Settings(var_dir=tmp_path, pkcs11_module=softhsm_module_path,
                        pkcs11_server="off",  # one process: this test's own token dir
                        so_pin=secrets.token_hex(8), service_pin=generate_pin(8),
                        root_pin=generate_pin(8), envelope_token_pin=generate_pin(8),
                        argon2_time_cost=1, argon2_memory_kib=1024,
                        public_url="http://pki.tawqi.ma", policy_oid=DOCUMENTATION_POLICY_OID,
                        # operators log in through the API here, without enrolling a TOTP
                        totp_required_roles="")
    rt = Runtime(settings, clock=clock, engine=engine)
    library = rt.tokens()
    with rt.unit_of_work() as session:
        ca.init_ca(session, clock, library, Profile.from_settings(settings),
                   root_token=settings.root_token_label, ca_token=settings.ca_token_label,
                   so_pin=settings.so_pin, pin=settings.service_pin,
                   root_pin=settings.root_pin, actor="installer")
    provision_envelope_key(library, token_label=settings.envelope_token,
                           token_pin=settings.envelope_token_pin,
                           key_label=settings.envelope_key, so_pin=settings.so_pin)
    app = create_app(rt=rt)
    with rt.unit_of_work() as session:
        accounts.create_user(session, clock, app.extensions["tawqi.passwords"],
                             username="dgcl.admin", display_name="Administrateur DGCL",
                             role="dgcl_admin", password=ADMIN_PASSWORD, actor="installer")
    try:
        yield Stack(app.test_client(), rt, library)
    finally:
        rt.close()


def ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, (response.status_code, response.get_data(True))
    return response.get_json()


def login(client: FlaskClient, username: str, password: str) -> dict[str, str]:
    body = ok(client.post("/v1/auth/login", json={"username": username,
                                                  "password": password}))
    return {"Authorization": f"Bearer {body['token']}"}


def test_request_to_active_over_http(stack: Stack) -> None:
    http = stack.client
    admin = login(http, "dgcl.admin", ADMIN_PASSWORD)

    # Accounts
    passwords = {name: f"long passphrase number {i} for this account" for i, name in enumerate(
                 ("barid.operator", "contact.hoceima", "president.imzouren"))}
    ok(http.post("/v1/users", json={"username": "barid.operator", "display_name": "Opérateur",
                                    "role": "operator",
                                    "password": passwords["barid.operator"]},
                 headers=admin), 201)
    ok(http.post("/v1/users", json={"username": "contact.hoceima",
                                    "display_name": "Samira El Idrissi", "role": "contact",
                                    "province_code": PROVINCE,
                                    "password": passwords["contact.hoceima"]},
                 headers=admin), 201)
    president_user = ok(http.post("/v1/users", json={
        "username": "president.imzouren", "display_name": "Karim Benali", "role": "holder",
        "password": passwords["president.imzouren"]}, headers=admin), 201)
    operator = login(http, "barid.operator", passwords["barid.operator"])
    contact = login(http, "contact.hoceima", passwords["contact.hoceima"])

    # The governor's designation, registered by the provider
    ok(http.post("/v1/contacts", json={
        "province_code": PROVINCE, "full_name": "Samira El Idrissi",
        "title": "Cheffe de la division des collectivités territoriales",
        "phone": "0539981234", "postal_address": "Province d'Al Hoceima, BP 1",
        "email": "contact.alhoceima@interieur.gov.ma", "decision_reference": "DEC-2026-017",
        "decision_date": "2026-02-01", "designated_by": "Le gouverneur"},
        headers=operator), 201)

    # The contact registers the president and asks for a device token
    holder = ok(http.post("/v1/holders", json={
        "cin": "AB123456", "given_name_fr": "Karim", "surname_fr": "Benali",
        "given_name_ar": "كريم", "surname_ar": "بنعلي", "role": "president",
        "mobile": "0661234567", "email": "k.benali@example.ma", "commune_code": COMMUNE},
        headers=contact), 201)
    ok(http.post(f"/v1/users/{president_user['id']}/holder", json={"holder_id": holder["id"]},
                 headers=admin))
    president = login(http, "president.imzouren", passwords["president.imzouren"])
    before = ok(http.get(f"/v1/quotas/entities/{COMMUNE}", headers=contact))
    submitted = ok(http.post("/v1/requests", json={"holder_id": holder["id"],
                                                   "token_form": "device"},
                             headers={**contact, "Idempotency-Key": "imzouren-2026-1"}), 201)
    request_id = submitted["id"]
    assert submitted["status"] == "submitted"
    reserved = ok(http.get(f"/v1/quotas/entities/{COMMUNE}", headers=contact))
    assert reserved["reserved"] == before["reserved"] + 1

    # The registration authority approves; the token is personalised
    ok(http.post(f"/v1/requests/{request_id}/approve",
                 json={"identity_check": "CIN copy and council minutes checked"},
                 headers=operator))
    personalised = ok(http.post(f"/v1/requests/{request_id}/personalise", headers=operator))
    assert personalised["status"] == "personalised"
    serial = personalised["certificate_serial"]
    assert serial

    # Courier batch: prepared and shipped by the provider, received by the contact
    batch = ok(http.post("/v1/batches", json={"province_code": PROVINCE}, headers=operator),
               201)
    assert request_id in batch["request_ids"]
    shipped = ok(http.post(f"/v1/batches/{batch['id']}/dispatch",
                           json={"tracking_number": "EE123456785MA"}, headers=operator))
    assert shipped["status"] == "dispatched"
    received = ok(http.post(f"/v1/batches/{batch['id']}/receive", json={}, headers=contact))
    assert received["status"] == "received"

    # Hand-over: the PIN notice is queued for the holder (never shown here)
    handed = ok(http.post(f"/v1/requests/{request_id}/handover",
                          json={"handed_to": "Karim Benali", "acknowledgement": "RC-2026-0042"},
                          headers=contact))
    assert handed["status"] == "handed_over"
    notices = ok(http.get(f"/v1/outbox?holder_id={holder['id']}", headers=operator))
    assert {m["channel"] for m in notices["items"]} >= {"sms", "email"}

    # The president: terms, PIN changed on their machine, activation
    ok(http.post(f"/v1/requests/{request_id}/terms", json={"version": "2026-01"},
                 headers=president))
    ok(http.post(f"/v1/requests/{request_id}/pin-changed", headers=president))
    active = ok(http.post(f"/v1/requests/{request_id}/activate", headers=president))
    assert active["status"] == "active"
    detail = ok(http.get(f"/v1/requests/{request_id}", headers=president))
    assert detail["ready_to_sign"] is True, detail["not_ready_reasons"]
    assert [s["status"] for s in detail["timeline"]] == [
        "submitted", "approved", "personalised", "shipped", "delivered", "handed_over",
        "active"]
    consumed = ok(http.get(f"/v1/quotas/entities/{COMMUNE}", headers=contact))
    assert consumed["reserved"] == before["reserved"]
    assert consumed["consumed"] == before["consumed"] + 1

    # The certificate, as its holder sees it; the DER is a real certificate
    certificate = ok(http.get(f"/v1/certificates/{serial}", headers=president))
    assert certificate["status"] == "issued" and certificate["valid_now"] is True
    assert certificate["cin"] == "AB123456"
    der = http.get(f"/v1/certificates/{serial}/der", headers=president)
    assert der.status_code == 200 and der.mimetype == "application/pkix-cert"
    from cryptography import x509

    parsed = x509.load_der_x509_certificate(der.data)
    assert "AB123456" in parsed.subject.rfc4514_string()

    # Oversight: the contact's overview, the audit log intact
    overview = ok(http.get(f"/v1/provinces/{PROVINCE}/overview", headers=contact))
    assert overview["by_status"].get("active") == 1
    chain = ok(http.get("/v1/audit/verify", headers=admin))
    assert chain["ok"] is True and chain["checked"] > 20
    events = ok(http.get(f"/v1/audit/events?object_id={request_id}"
                         "&object_type=certificate_request&limit=100", headers=admin))
    assert len(events["items"]) >= 7

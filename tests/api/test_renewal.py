"""Renewal through the request flow: within the quota, the same key certified again and
written to the token, the credential carried over (remote signing works with the renewed
certificate) and the old certificate revoked ``superseded`` once the new one is active."""

from __future__ import annotations

import base64
import hashlib

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, utils
from flask import Flask
from flask.testing import FlaskClient

from api.runtime import Runtime
from delivery import requests
from pki import issuance, lifecycle
from quotas import ledger
from tests.api.conftest import Caller
from tests.api.test_csc import SHA256, Hosted, Sms, authorize, make_hosted


def _available(rt: Runtime, request_id: int) -> int:
    with rt.unit_of_work() as session:
        found = requests.get_request(session, request_id)
        entity = ledger.Entity.parse(found.entity)
        return ledger.check(session, entity, found.year).remaining


def test_renewal_carries_the_credential_over(client: FlaskClient, app: Flask,
                                             api_runtime: Runtime,
                                             callers: dict[str, Caller]) -> None:
    sms = Sms(api_runtime, app)
    hosted = make_hosted(api_runtime, app, sms)
    operator, platform = callers["operator"], callers["platform"]
    before = _available(api_runtime, hosted.request_id)

    asked = client.post(f"/v1/requests/{hosted.request_id}/renew", headers={
        **operator.headers, "Idempotency-Key": "renew-0001"})
    assert asked.status_code == 201, asked.get_json()
    renewal = asked.get_json()
    assert renewal["kind"] == "renewal" and renewal["follows_request_id"] == hosted.request_id
    assert _available(api_runtime, hosted.request_id) == before - 1  # within the quota
    again = client.post(f"/v1/requests/{hosted.request_id}/renew", headers=operator.headers)
    assert again.status_code == 409  # one open request per holder
    rid = renewal["id"]
    for step, body in (("approve", {"identity_check": "holder known, same mandate"}),
                       ("personalise", None)):
        moved = client.post(f"/v1/requests/{rid}/{step}", json=body, headers=operator.headers)
        assert moved.status_code == 200, moved.get_json()
    personalised = moved.get_json()
    new_serial = personalised["certificate_serial"]
    assert new_serial != hosted.serial and personalised["allowed_steps"] == ["activate"]
    # Until activation the old certificate still signs (no gap) and is not revoked.
    with api_runtime.unit_of_work() as session:
        assert lifecycle.certificate_status(session, hosted.serial).status == "issued"
        record = issuance.get_record(session, new_serial)
        label, key_id, new_der = record.token_label, bytes.fromhex(record.key_id), record.der
    # The renewed certificate is on the token, as issuance writes it.
    assert api_runtime.tokens().read_certificate(label, key_id=key_id) == new_der

    active = client.post(f"/v1/requests/{rid}/activate", headers=operator.headers)
    assert active.status_code == 200, active.get_json()
    assert active.get_json()["status"] == "active"
    assert active.get_json()["pin_change_required"] is False
    with api_runtime.unit_of_work() as session:
        old = lifecycle.certificate_status(session, hosted.serial)
        assert old.status == "revoked" and old.revocation_reason == "superseded"
        assert lifecycle.certificate_status(session, new_serial).replaces_id == old.id
        assert requests.current_credential(session, hosted.holder_id).id == rid

    renewed = Hosted(hosted.holder_id, hosted.cin, new_serial, hosted.pin, rid, hosted.mobile)
    digest = hashlib.sha256(b"permit after renewal").digest()
    granted = authorize(client, platform, renewed, sms, hashes_=[digest])
    assert granted["_status"] == 200, granted
    signed = client.post("/csc/v2/signatures/signHash", headers=platform.headers, json={
        "credentialID": new_serial, "SAD": granted["SAD"],
        "hashes": [base64.b64encode(digest).decode()], "hashAlgorithmOID": SHA256,
        "signAlgo": "1.2.840.10045.4.3.2"})
    assert signed.status_code == 200, signed.get_json()
    public = x509.load_der_x509_certificate(new_der).public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    public.verify(base64.b64decode(signed.get_json()["signatures"][0]), digest,
                  ec.ECDSA(utils.Prehashed(hashes.SHA256())))
    # The old serial no longer signs.
    refused = client.post("/csc/v2/credentials/sendOTP", headers=platform.headers,
                          json={"credentialID": hosted.serial})
    assert refused.status_code == 409 and "revoked" in refused.get_json()["detail"]

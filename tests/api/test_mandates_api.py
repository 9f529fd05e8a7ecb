"""A change of mandate through the API, on the real token layer: the vice-president who
becomes president has her old certificate revoked (affiliationChanged), a request for the
new mandate follows, and the new certificate's title agrees with her civility."""

from __future__ import annotations

from cryptography import x509
from cryptography.x509.oid import NameOID
from flask import Flask
from flask.testing import FlaskClient

from api.runtime import Runtime
from api.wiring.flaskapp import wiring as app_wiring
from delivery import holders, personalisation, requests
from pki import lifecycle
from tests.api.conftest import Caller, provision_service_tokens
from tests.delivery.conftest import make_contact, make_holder

COMMUNE = "01.051.03.01"


def _title(rt: Runtime, serial: str) -> str:
    with rt.unit_of_work() as session:
        certificate = x509.load_der_x509_certificate(lifecycle.certificate_der(session, serial))
    return str(certificate.subject.get_attributes_for_oid(NameOID.TITLE)[0].value)


def _issue(rt: Runtime, app: Flask, request_id: int) -> str:
    wiring = app_wiring(app)
    with app.app_context():
        personaliser, sealer = wiring.personaliser(), wiring.sealer()
    with rt.unit_of_work() as session:
        requests.approve_request(session, rt.clock, request_id, actor="ra",
                                 identity_check="CIN and council minutes checked")
        row = personalisation.personalise_request(session, rt.clock, request_id,
                                                  personaliser=personaliser, sealer=sealer,
                                                  actor="operator", policy=wiring.policy)
        requests.activate_request(session, rt.clock, request_id, actor="operator")
        return str(row.certificate_serial)


def test_vice_president_becomes_president(api_runtime: Runtime, app: Flask,
                                          client: FlaskClient,
                                          callers: dict[str, Caller]) -> None:
    provision_service_tokens(api_runtime)
    rt = api_runtime
    with rt.unit_of_work() as session:
        contact = make_contact(session, rt.clock)
        holder = make_holder(session, rt.clock, COMMUNE, contact=contact,
                             role="vice_president", civility="mrs")
        holder_id, contact_id = holder.id, contact.id
        first = requests.submit_request(session, rt.clock, contact_id=contact_id,
                                        holder_id=holder_id, token_form="hosted",
                                        actor="contact").id
    old_serial = _issue(rt, app, first)
    assert _title(rt, old_serial) == "Vice-présidente du conseil de la commune"

    body = {"role": "president", "started_on": rt.clock.now().date().isoformat(),
            "commune_code": COMMUNE, "reason": "elected president by the council",
            "professional_email": "presidente@commune.ma", "token_form": "hosted"}
    refused = client.post(f"/v1/holders/{holder_id}/mandates", json=body,
                          headers=callers["other_contact"].headers)
    assert refused.status_code == 403
    headers = {**callers["contact"].headers, "Idempotency-Key": "mandate-change-1"}
    done = client.post(f"/v1/holders/{holder_id}/mandates", json=body, headers=headers)
    assert done.status_code == 201, done.get_json()
    result = done.get_json()
    again = client.post(f"/v1/holders/{holder_id}/mandates", json=body, headers=headers)
    assert again.status_code == 201 and again.get_json() == result  # a retry does it once
    assert result["revoked_serials"] == [old_serial]
    assert result["opened"]["title_fr"] == "Présidente du conseil de la commune"
    assert result["opened"]["title_ar"] == "رئيسة مجلس الجماعة"
    assert result["ended"]["successor_id"] == result["opened"]["id"]
    with rt.unit_of_work() as session:
        status = lifecycle.certificate_status(session, old_serial)
        assert (status.status, status.revocation_reason) == ("revoked", "affiliationChanged")
        assert holders.get_holder(session, holder_id).role == "president"
    history = client.get(f"/v1/holders/{holder_id}/mandates",
                         headers=callers["operator"].headers).get_json()["items"]
    assert [(m["role"], m["ended_on"] is None) for m in history] == [
        ("vice_president", False), ("president", True)]

    new_serial = _issue(rt, app, result["request_id"])
    assert _title(rt, new_serial) == "Présidente du conseil de la commune"
    with rt.unit_of_work() as session:
        certificate = x509.load_der_x509_certificate(
            lifecycle.certificate_der(session, new_serial))
    assert "Commune" in str(certificate.subject.get_attributes_for_oid(
        NameOID.ORGANIZATION_NAME)[0].value)

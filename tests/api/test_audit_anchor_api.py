"""A CA operation through the HTTP API anchors the audit log once it committed; a refused
one does not."""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient

from api.audit_anchor import verify_now
from api.runtime import Runtime
from api.wiring.flaskapp import wiring as app_wiring
from pki import issuance
from pki.profiles import HolderIdentity
from tests.api.conftest import Caller, provision_service_tokens


def test_suspend_over_http_anchors_the_log(api_runtime: Runtime, app: Flask,
                                          client: FlaskClient,
                                          callers: dict[str, Caller]) -> None:
    rt = api_runtime
    provision_service_tokens(rt)
    settings = rt.settings
    rt.tokens().init_token("holder-anchor", settings.so_pin, "73920145")
    with app.app_context():
        authority = app_wiring(app).authority()
    with rt.unit_of_work() as session:
        issued = issuance.issue_holder_certificate(
            session, rt.clock, authority, rt.tokens(), token_label="holder-anchor",
            token_pin="73920145", actor="test",
            holder=HolderIdentity(cin="AB123456", given_name="Fatima", surname="Idrissi",
                                  title="Présidente", organization="Commune de Tiznit"))
    anchors = settings.effective_audit_anchor_dir
    operator = callers["operator"].headers

    refused = client.post("/v1/certificates/0a1b/suspend", json={}, headers=operator)
    assert refused.status_code == 404
    assert not anchors.exists() or not any(anchors.iterdir())

    done = client.post(f"/v1/certificates/{issued.serial}/suspend", json={"note": "inquiry"},
                       headers=operator)
    assert done.status_code == 200, done.get_json()
    assert [p.name for p in anchors.iterdir()] == ["checkpoint-00000001.json"]
    report = verify_now(rt)
    assert report.ok, report.summary()
    assert report.proved_seq is not None and report.proved_seq == report.last_seq - 1
    chain = client.get("/v1/audit/verify", headers=callers["dgcl_admin"].headers)
    assert chain.status_code == 200, chain.get_json()
    body = chain.get_json()
    assert body["ok"] is True and body["checkpoints"] == 1
    assert body["proved_seq"] == report.proved_seq and body["problems"] == []
    assert "; proved intact up to seq" in body["summary"]

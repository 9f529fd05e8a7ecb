"""POST /v1/certificates/revoke-bulk: a dry run, the revocation with an idempotency key (a
retry answers the same), a refused list that changes nothing."""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient

from api.runtime import Runtime
from pki import crl, lifecycle
from tests.api.conftest import Caller
from tests.api.test_csc import Sms, make_hosted

URL = "/v1/certificates/revoke-bulk"


def test_revoke_bulk_over_http(client: FlaskClient, app: Flask, api_runtime: Runtime,
                               callers: dict[str, Caller]) -> None:
    hosted = make_hosted(api_runtime, app, Sms(api_runtime, app))
    operator = callers["operator"]
    refused = client.post(URL, json={"serials": [hosted.serial, "feedface"],
                                     "reason": "affiliationChanged"}, headers=operator.headers)
    assert refused.status_code == 422
    assert refused.get_json()["problems"] == [{"serial": "feedface",
                                               "problem": "unknown serial"}]
    plan = client.post(URL, json={"serials": [hosted.serial], "reason": "affiliation-changed",
                                  "dry_run": True}, headers=operator.headers)
    assert plan.status_code == 200, plan.get_json()
    assert plan.get_json()["revoked"] == [hosted.serial] and plan.get_json()["dry_run"]
    with api_runtime.unit_of_work() as session:
        assert lifecycle.certificate_status(session, hosted.serial).status == "issued"

    headers = {**operator.headers, "Idempotency-Key": "election-2026-rabat-0001"}
    body = {"serials": [hosted.serial], "reason": "affiliationChanged"}
    done = client.post(URL, json=body, headers=headers)
    assert done.status_code == 200, done.get_json()
    answer = done.get_json()
    assert answer["revoked"] == [hosted.serial] and answer["crl_number"] is not None
    retry = client.post(URL, json=body, headers=headers)
    assert retry.status_code == 200 and retry.get_json() == answer
    with api_runtime.unit_of_work() as session:
        status = lifecycle.certificate_status(session, hosted.serial)
        assert status.status == "revoked" and status.revocation_reason == "affiliationChanged"
        latest = crl.latest_crl(session, _issuing_id(session))
        assert latest.number == answer["crl_number"]
    again = client.post(URL, json=body, headers=operator.headers)
    assert again.get_json()["skipped"] == [hosted.serial]
    assert again.get_json()["revoked"] == []


def _issuing_id(session: object) -> int:
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from pki.models import CertificateRecord

    assert isinstance(session, Session)
    return int(session.scalars(select(CertificateRecord.authority_id)
                               .where(CertificateRecord.profile == "holder").limit(1)).one())

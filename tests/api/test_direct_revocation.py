"""A certificate an operator revokes directly closes the request that held it (``ended``,
audited, in the revocation's transaction): ``POST /v1/certificates/{serial}/revoke``, the
bulk revocation, and the registry's revoke button on the web. Suspension and release leave
the request active. (``tawqi cert revoke``: tests/delivery/test_campaign_prepare_cli.py.)"""

from __future__ import annotations

import json
import re

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from api.runtime import Runtime
from core.audit import AuditEvent
from delivery import requests
from tests.api.conftest import Caller, provision_service_tokens
from tests.api.test_mandates_api import _issue
from tests.api.test_outbox_and_contact_change import web_login
from tests.delivery.conftest import make_contact, make_holder

COMMUNE = "01.051.01.05"


def _active_requests(rt: Runtime, app: Flask, count: int) -> list[tuple[int, str]]:
    with rt.unit_of_work() as session:
        contact_id = make_contact(session, rt.clock).id
        ids = []
        for _ in range(count):
            holder = make_holder(session, rt.clock, COMMUNE)
            ids.append(requests.submit_request(session, rt.clock, contact_id=contact_id,
                                               holder_id=holder.id, token_form="hosted",
                                               actor="contact").id)
    return [(request_id, _issue(rt, app, request_id)) for request_id in ids]


def _status(rt: Runtime, request_id: int) -> str:
    with rt.unit_of_work() as session:
        return requests.get_request(session, request_id).status


def test_direct_revocation_ends_the_request(api_runtime: Runtime, app: Flask,
                                            client: FlaskClient,
                                            callers: dict[str, Caller]) -> None:
    rt = api_runtime
    provision_service_tokens(rt)
    (one, one_serial), (bulk, bulk_serial), (web, web_serial) = _active_requests(rt, app, 3)
    operator = callers["operator"].headers

    for step in ("suspend", "release"):
        answer = client.post(f"/v1/certificates/{one_serial}/{step}", headers=operator,
                             json={"note": "token reported missing, then found"})
        assert answer.status_code == 200, answer.get_json()
        assert _status(rt, one) == "active"  # on hold (or released): still the credential

    revoked = client.post(f"/v1/certificates/{one_serial}/revoke", headers=operator,
                          json={"reason": "privilegeWithdrawn"})
    assert revoked.status_code == 200, revoked.get_json()
    assert revoked.get_json()["status"] == "revoked"
    assert _status(rt, one) == "ended"
    with rt.unit_of_work() as session:
        event = session.scalars(select(AuditEvent).where(
            AuditEvent.action == "delivery.request.ended",
            AuditEvent.object_id == str(one))).one()
        summary = json.loads(event.summary)
        assert summary["revocation_reason"] == "privilegeWithdrawn"
        assert summary["certificate_serial"] == one_serial and summary["revoked_directly"]
        assert event.actor == "user:operator"
        assert "privilegeWithdrawn" in requests.get_request(session, one).status_reason
        timeline = requests.timeline(session, one)
        assert timeline.steps[-1].status == "ended"
    # the other credentials are untouched
    assert (_status(rt, bulk), _status(rt, web)) == ("active", "active")

    done = client.post("/v1/certificates/revoke-bulk", headers=operator,
                       json={"serials": [bulk_serial], "reason": "cessationOfOperation"})
    assert done.status_code == 200, done.get_json()
    assert _status(rt, bulk) == "ended"
    again = client.post("/v1/certificates/revoke-bulk", headers=operator,
                        json={"serials": [bulk_serial], "reason": "cessationOfOperation"})
    assert again.get_json()["skipped"] == [bulk_serial]  # nothing ended twice
    with rt.unit_of_work() as session:
        assert len(session.scalars(select(AuditEvent).where(
            AuditEvent.action == "delivery.request.ended",
            AuditEvent.object_id == str(bulk))).all()) == 1

    # the registry's page (web), as an operator
    browser = web_login(app.test_client(), "operator")
    page = browser.get(f"/web/certificates?q={web_serial}")
    assert page.status_code == 200
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token
    answer = browser.post(f"/web/certificates/{web_serial}/revoke",
                          data={"reason": "keyCompromise", "csrf_token": token.group(1)})
    assert answer.status_code == 303, answer.text
    assert _status(rt, web) == "ended"

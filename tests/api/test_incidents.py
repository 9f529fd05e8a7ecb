"""Lost, stolen or damaged tokens and cancelling after personalisation, over HTTP: the
certificate suspended (or revoked keyCompromise), a replacement request within or outside
the quota as the policy says, the replacement's activation superseding the old
certificate; a cancellation that revokes, wipes the token and releases the reservation."""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient

from api.runtime import Runtime
from delivery import requests
from pki import issuance, lifecycle
from quotas import ledger, policy
from tests.api.conftest import Caller
from tests.api.test_csc import Sms, make_hosted


def _remaining(rt: Runtime, request_id: int) -> int:
    with rt.unit_of_work() as session:
        found = requests.get_request(session, request_id)
        return ledger.check(session, ledger.Entity.parse(found.entity), found.year).remaining


def _status(rt: Runtime, serial: str) -> tuple[str, str | None]:
    with rt.unit_of_work() as session:
        found = lifecycle.certificate_status(session, serial)
        return found.status, found.revocation_reason


def _post(client: FlaskClient, caller: Caller, path: str, body: dict | None = None,
          expect: int = 200) -> dict:
    answer = client.post(path, json=body, headers=caller.headers)
    assert answer.status_code == expect, answer.get_json()
    found: dict = answer.get_json()
    return found


def test_lost_then_cancelled_then_stolen(client: FlaskClient, app: Flask,
                                         api_runtime: Runtime,
                                         callers: dict[str, Caller]) -> None:
    hosted = make_hosted(api_runtime, app, Sms(api_runtime, app))
    operator, contact = callers["operator"], callers["contact"]
    base = f"/v1/requests/{hosted.request_id}"
    quota = _remaining(api_runtime, hosted.request_id)

    # Lost: suspended at once, a replacement request follows (the default policy charges it).
    replacement = _post(client, contact, f"{base}/incident",
                        {"incident": "lost", "note": "left in a taxi"}, expect=201)
    assert replacement["kind"] == "replacement"
    assert replacement["follows_request_id"] == hosted.request_id
    assert _status(api_runtime, hosted.serial) == ("suspended", None)
    assert _remaining(api_runtime, hosted.request_id) == quota - 1

    # The replacement is personalised, then cancelled: revoked, token wiped, quota back.
    rid = replacement["id"]
    _post(client, operator, f"/v1/requests/{rid}/approve", {"identity_check": "CIN seen"})
    personalised = _post(client, operator, f"/v1/requests/{rid}/personalise")
    serial = personalised["certificate_serial"]
    with api_runtime.unit_of_work() as session:
        record = issuance.get_record(session, serial)
        label, key_id = record.token_label, bytes.fromhex(record.key_id)
    tokens = api_runtime.tokens()
    assert tokens.read_certificate(label, key_id=key_id) is not None
    cancelled = _post(client, contact, f"/v1/requests/{rid}/cancel-personalised",
                      {"reason": "the holder found the token"})
    assert cancelled["status"] == "cancelled"
    assert _status(api_runtime, serial) == ("revoked", "cessationOfOperation")
    assert tokens.read_certificate(label, key_id=key_id) is None
    assert _remaining(api_runtime, hosted.request_id) == quota
    _post(client, operator, f"/v1/requests/{rid}/cancel-personalised", {"reason": "again"},
          expect=409)

    # A policy that does not charge replacements; then the token is stolen after all.
    with api_runtime.unit_of_work() as session:
        year = requests.get_request(session, hosted.request_id).year
        current = policy.spec_for_year(session, year)
        policy.record_policy(session, api_runtime.clock, policy.PolicySpec(
            current.version + 1, current.census_year, year, current.services_count,
            current.tiers, "replacements outside the quota",
            replacement_consumes_quota=False), actor="dgcl")
    stolen = _post(client, operator, f"{base}/incident",
                   {"incident": "stolen", "note": "burglary, police report 12/2026"},
                   expect=201)
    assert _status(api_runtime, hosted.serial) == ("revoked", "keyCompromise")
    assert _remaining(api_runtime, hosted.request_id) == quota  # outside the quota
    rid = stolen["id"]
    _post(client, operator, f"/v1/requests/{rid}/approve", {"identity_check": "CIN seen"})
    _post(client, operator, f"/v1/requests/{rid}/personalise")
    active = _post(client, operator, f"/v1/requests/{rid}/activate")
    assert active["status"] == "active"
    assert _remaining(api_runtime, hosted.request_id) == quota
    assert _status(api_runtime, hosted.serial) == ("revoked", "keyCompromise")
    assert _status(api_runtime, active["certificate_serial"]) == ("issued", None)
    with api_runtime.unit_of_work() as session:
        assert requests.current_credential(session, hosted.holder_id).id == rid

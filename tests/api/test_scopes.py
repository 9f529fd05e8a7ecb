"""Scopes: a contact acts only on their province, a holder only on their own records."""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient

from api.runtime import Runtime
from tests.api.conftest import OTHER_PROVINCE, PROVINCE, Caller
from tests.api.world import COMMUNE_THERE, World, build


@pytest.fixture
def world(api_runtime: Runtime, app: Flask, callers: dict[str, Caller]) -> World:
    return build(api_runtime, app, callers)


def _type(response) -> str:
    return response.get_json()["type"].rsplit("/", 1)[-1]


def test_contact_refused_on_another_province(client: FlaskClient, callers: dict[str, Caller],
                                             world: World) -> None:
    contact = callers["contact"].headers
    refused = [
        client.get(f"/v1/holders/{world.holder_there}", headers=contact),
        client.post(f"/v1/holders/{world.holder_there}/contact-details",
                    json={"email": "x@example.ma"}, headers=contact),
        client.get(f"/v1/requests/{world.request_there}", headers=contact),
        client.post(f"/v1/requests/{world.request_there}/cancel", json={"reason": "x"},
                    headers=contact),
        client.post(f"/v1/requests/{world.request_there}/handover",
                    json={"handed_to": "x", "acknowledgement": "y"}, headers=contact),
        client.post("/v1/requests", json={"holder_id": world.holder_there,
                                          "token_form": "device"}, headers=contact),
        client.get(f"/v1/batches/{world.batch_there}", headers=contact),
        client.post(f"/v1/batches/{world.batch_there}/receive", json={}, headers=contact),
        client.get(f"/v1/contacts/{world.contact_there}", headers=contact),
        client.get(f"/v1/holders?province={OTHER_PROVINCE}", headers=contact),
        client.get(f"/v1/requests?province={OTHER_PROVINCE}", headers=contact),
        client.get(f"/v1/batches?province={OTHER_PROVINCE}", headers=contact),
        client.get(f"/v1/provinces/{OTHER_PROVINCE}/overview", headers=contact),
        client.post("/v1/holders", json={
            "cin": "QQ123456", "given_name_fr": "A", "surname_fr": "B", "given_name_ar": "أحمد",
            "surname_ar": "ب", "role": "president", "mobile": "0661234567",
            "email": "a@example.ma", "commune_code": COMMUNE_THERE}, headers=contact),
    ]
    assert [(r.status_code, _type(r)) for r in refused] == [(403, "out-of-scope")] * len(refused)
    # The other province's contact is refused on this one's in the same way.
    other = callers["other_contact"].headers
    assert client.get(f"/v1/requests/{world.request_here}", headers=other).status_code == 403
    assert client.get(f"/v1/batches/{world.batch_here}", headers=other).status_code == 403
    # Nothing changed on the other side.
    detail = client.get(f"/v1/requests/{world.request_there}",
                        headers=callers["operator"].headers).get_json()
    assert detail["request"]["status"] == "submitted"


def test_contact_lists_are_their_province(client: FlaskClient, callers: dict[str, Caller],
                                          world: World) -> None:
    contact = callers["contact"].headers
    for path in ("/v1/holders", "/v1/requests", "/v1/batches", "/v1/contacts"):
        items = client.get(path, headers=contact).get_json()["items"]
        assert items and {i["province_code"] for i in items} == {PROVINCE}, path
    operator = callers["operator"].headers
    everything = client.get("/v1/requests", headers=operator).get_json()["items"]
    assert {i["province_code"] for i in everything} == {PROVINCE, OTHER_PROVINCE}


def test_holder_sees_only_their_own(client: FlaskClient, callers: dict[str, Caller],
                                    world: World) -> None:
    holder = callers["holder"].headers
    assert client.get(f"/v1/holders/{world.holder_here}", headers=holder).status_code == 200
    assert client.get(f"/v1/holders/{world.holder_there}", headers=holder).status_code == 403
    own = client.get("/v1/requests", headers=holder).get_json()["items"]
    assert {r["holder_id"] for r in own} == {world.holder_here}
    assert client.get(f"/v1/requests?holder_id={world.holder_there}",
                      headers=holder).status_code == 403
    assert client.get(f"/v1/requests/{world.request_there}", headers=holder).status_code \
        == 403
    assert client.post(f"/v1/requests/{world.request_there}/terms",
                       json={"version": "2026-01"}, headers=holder).status_code == 403
    assert client.post("/v1/pin-reset", json={"cin": "ZZ999999"},
                       headers=holder).status_code == 403
    holders = client.get("/v1/holders", headers=holder).get_json()
    assert [h["id"] for h in holders["items"]] == [world.holder_here]


def test_request_lifecycle_over_http(client: FlaskClient, callers: dict[str, Caller],
                                     world: World) -> None:
    contact = callers["contact"].headers
    operator = callers["operator"].headers
    made = client.post("/v1/holders", json={
        "cin": "KA123456", "given_name_fr": "Amina", "surname_fr": "Tazi",
        "given_name_ar": "أمينة", "surname_ar": "التازي", "role": "president",
        "mobile": "0661234567", "email": "a.tazi@example.ma",
        "commune_code": "01.051.01.05"}, headers=contact)
    assert made.status_code == 201, made.get_json()
    holder_id = made.get_json()["id"]
    body = {"holder_id": holder_id, "token_form": "hosted"}
    key = {**contact, "Idempotency-Key": "req-KA123456"}
    first = client.post("/v1/requests", json=body, headers=key)
    assert first.status_code == 201, first.get_json()
    again = client.post("/v1/requests", json=body, headers=key)
    assert again.get_json() == first.get_json()
    request_id = first.get_json()["id"]
    quota = client.get("/v1/quotas/entities/01.051.01.05?year=2026", headers=contact)
    assert quota.get_json()["reserved"] == 1  # reserved once, despite the retry
    approved = client.post(f"/v1/requests/{request_id}/approve",
                           json={"identity_check": "CIN copy"}, headers=operator)
    assert approved.get_json()["status"] == "approved"
    wrong = client.post(f"/v1/requests/{request_id}/activate", headers=operator)
    assert wrong.status_code == 409
    assert wrong.get_json()["current_status"] == "approved"
    cancelled = client.post(f"/v1/requests/{request_id}/cancel", json={"reason": "moved"},
                            headers=contact)
    assert cancelled.get_json()["status"] == "cancelled"
    quota = client.get("/v1/quotas/entities/01.051.01.05?year=2026", headers=contact)
    assert quota.get_json()["reserved"] == 0 and quota.get_json()["released"] == 1
    detail = client.get(f"/v1/requests/{request_id}", headers=contact).get_json()
    assert [s["status"] for s in detail["timeline"]] == ["submitted", "approved", "cancelled"]


def test_pin_and_otp_rate_limits(client: FlaskClient, callers: dict[str, Caller],
                                 world: World) -> None:
    # make_settings: 3 PIN operations and 3 one-time-code operations per 60 s.
    holder = callers["holder"].headers
    pin = [client.post(f"/v1/requests/{world.request_here}/pin",
                       json={"old_pin": "123456", "new_pin": "654321"},
                       headers=holder).status_code for _ in range(4)]
    assert pin[:3] == [409] * 3 and pin[3] == 429  # 409: no token in hand yet
    otp = [client.post("/v1/pin-reset", json={"cin": world.holder_here_cin},
                       headers=holder).status_code for _ in range(4)]
    assert otp[3] == 429 and 429 not in otp[:3]
    # Another principal has buckets of its own, but the address is shared: refused too.
    other = client.post(f"/v1/requests/{world.request_here}/pin",
                        json={"old_pin": "123456", "new_pin": "654321"},
                        headers=callers["operator"].headers)
    assert other.status_code == 403  # refused by role before any counting


def test_outbox_depth_in_metrics(client: FlaskClient, callers: dict[str, Caller],
                                 world: World) -> None:
    operator = callers["operator"].headers
    handed = client.post(f"/v1/batches/{world.batch_here}/dispatch",
                         json={"tracking_number": "EE123456785MA"}, headers=operator)
    assert handed.status_code == 200, handed.get_json()
    text = client.get("/metrics").get_data(as_text=True)
    assert 'tawqi_outbox_messages{status="pending"}' in text
    assert "tawqi_certificates" in text


def test_lists_page_through_the_whole_list(client: FlaskClient, callers: dict[str, Caller],
                                           world: World) -> None:
    dispatched = client.post(f"/v1/batches/{world.batch_here}/dispatch",
                             json={"tracking_number": "EE123456785MA"},
                             headers=callers["operator"].headers)
    assert dispatched.status_code == 200  # the contact's email: something in the outbox
    lists = {"/v1/requests": "contact", "/v1/holders": "contact", "/v1/batches": "contact",
             "/v1/contacts": "contact", "/v1/outbox": "operator",
             "/v1/certificates": "operator", "/v1/audit/events": "dgcl_admin"}
    for path, role in lists.items():
        who = callers[role].headers
        whole = client.get(f"{path}?limit=500", headers=who).get_json()
        assert whole["total"] == len(whole["items"]) >= 1, path
        key = "seq" if path == "/v1/audit/events" else "id"
        seen, offset = [], 0
        while offset is not None:
            page = client.get(f"{path}?limit=2&offset={offset}", headers=who).get_json()
            assert page["total"] == whole["total"] and len(page["items"]) <= 2, path
            seen.extend(item[key] for item in page["items"])
            offset = page["next_offset"]
        assert seen == [item[key] for item in whole["items"]], path
    contact = callers["contact"].headers
    batch = client.get(f"/v1/batches/{world.batch_here}", headers=contact).get_json()
    listed = client.get("/v1/batches?limit=500", headers=contact).get_json()["items"]
    assert [b for b in listed if b["id"] == world.batch_here] == [batch]
    assert batch["request_ids"]  # the personalised token that travels in it

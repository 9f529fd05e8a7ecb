"""An election campaign through the API on the real token layer: a president re-elected,
one replaced by the vice-president; the incoming token prepared and activated on the
installation day, the outgoing certificates revoked in bulk; the report shows no gap."""

from __future__ import annotations

import re

from flask import Flask
from flask.testing import FlaskClient

from api.runtime import Runtime
from pki import lifecycle
from tests.api.conftest import OTHER_PROVINCE, PROVINCE, Caller, provision_service_tokens
from tests.api.test_mandates_api import _issue
from tests.api.test_outbox_and_contact_change import web_login
from tests.delivery.conftest import make_contact, make_holder, random_cin

KEPT_COMMUNE = "01.051.03.01"
CHANGED_COMMUNE = "01.051.01.05"
HEADER = ("commune_code,role,cin,given_name_fr,surname_fr,given_name_ar,surname_ar,civility,"
          "phone,email")


def _active(rt: Runtime, app: Flask, contact_id: int, commune: str, **changes: object
            ) -> tuple[int, str, str]:
    from delivery import requests

    with rt.unit_of_work() as session:
        holder = make_holder(session, rt.clock, commune, **changes)
        request_id = requests.submit_request(session, rt.clock, contact_id=contact_id,
                                             holder_id=holder.id, token_form="hosted",
                                             actor="contact").id
        cin = holder.cin
    return request_id, _issue(rt, app, request_id), cin


def test_campaign_from_import_to_zero_gap(api_runtime: Runtime, app: Flask,
                                          client: FlaskClient,
                                          callers: dict[str, Caller]) -> None:
    rt = api_runtime
    provision_service_tokens(rt)
    with rt.unit_of_work() as session:
        contact_id = make_contact(session, rt.clock).id
    _, kept_serial, kept_cin = _active(rt, app, contact_id, KEPT_COMMUNE)
    _, outgoing_serial, _ = _active(rt, app, contact_id, CHANGED_COMMUNE)
    _, vp_serial, vp_cin = _active(rt, app, contact_id, CHANGED_COMMUNE,
                                   role="vice_president", civility="mrs")
    admin = callers["dgcl_admin"].headers
    today = rt.clock.now().date().isoformat()
    opened = client.post("/v1/campaigns", headers=admin, json={
        "name": "Communales test", "installation_date": today, "scope_kind": "province",
        "scope_codes": [PROVINCE], "funding": "extra"})
    assert opened.status_code == 201, opened.get_json()
    campaign = opened.get_json()["id"]

    bad = client.post(f"/v1/campaigns/{campaign}/import", headers=admin, json={
        "csv": f"{HEADER}\n{KEPT_COMMUNE},president,{kept_cin},A,B,أ,ب,M,0661234567,"
               f"a@b.ma\n{CHANGED_COMMUNE},president,XX,A,B,أ,ب,M,0661234567,nope",
        "token_form": "hosted"})
    assert bad.status_code == 422
    assert {(e["line"], e["field"]) for e in bad.get_json()["errors"]} == {
        (3, "cin")}
    csv_text = "\n".join([
        HEADER,
        f"{KEPT_COMMUNE},president,{kept_cin},Karim,Benali,كريم,بنعلي,M,0661234567,k@b.ma",
        f"{CHANGED_COMMUNE},president,{vp_cin},Karim,Benali,كريم,بنعلي,F,0661234568,v@b.ma",
        f"{CHANGED_COMMUNE},vice_president,{random_cin()},Omar,Idrissi,عمر,الإدريسي,M,"
        "0661234569,o@b.ma"])
    imported = client.post(f"/v1/campaigns/{campaign}/import", headers=admin,
                           json={"csv": csv_text, "token_form": "hosted"})
    assert imported.status_code == 200, imported.get_json()
    assert imported.get_json() | {"campaign_id": 0} == {
        "campaign_id": 0, "lines": 3, "new_holders": 1, "re_elected": 1,
        "changed_mandate": 1, "requests": 2, "outgoing": 1}

    dry = client.post(f"/v1/campaigns/{campaign}/install", headers=admin,
                      json={"dry_run": True}).get_json()
    assert sorted(dry["to_revoke"]) == sorted([outgoing_serial, vp_serial])
    with rt.unit_of_work() as session:
        assert lifecycle.certificate_status(session, outgoing_serial).status == "issued"

    # the incoming tokens are prepared and activated on the installation day
    seats = client.get(f"/v1/campaigns/{campaign}", headers=admin).get_json()["seats"]
    for seat in seats:
        if seat["request_id"] is not None:
            _issue(rt, app, seat["request_id"])
    done = client.post(f"/v1/campaigns/{campaign}/install", headers=admin, json={})
    assert done.status_code == 200, done.get_json()
    assert sorted(done.get_json()["revoked"]) == sorted([outgoing_serial, vp_serial])
    again = client.post(f"/v1/campaigns/{campaign}/install", headers=admin, json={})
    assert again.get_json()["revoked"] == [] and again.get_json()["already_revoked"] == 2
    with rt.unit_of_work() as session:
        for serial in (outgoing_serial, vp_serial):
            status = lifecycle.certificate_status(session, serial)
            assert (status.status, status.revocation_reason) == ("revoked",
                                                                 "affiliationChanged")
        assert lifecycle.certificate_status(session, kept_serial).status == "issued"

    report = client.get(f"/v1/campaigns/{campaign}", headers=callers["contact"].headers)
    assert report.status_code == 200
    body = report.get_json()
    assert body["blocked"] == [] and body["max_gap_days"] == 0
    by_seat = {(s["commune_code"], s["role"]): s for s in body["seats"]}
    assert by_seat[(KEPT_COMMUNE, "president")]["re_elected"] is True
    assert by_seat[(CHANGED_COMMUNE, "president")]["outgoing_status"] == "revoked"
    assert set(by_seat[(CHANGED_COMMUNE, "president")]["steps"]) == {
        "submitted", "approved", "personalised", "active"}
    assert all(s["can_sign"] for s in body["seats"])
    refused = client.get(f"/v1/campaigns/{campaign}?province={OTHER_PROVINCE}",
                         headers=callers["contact"].headers)
    assert refused.status_code == 403
    notified = client.post(f"/v1/campaigns/{campaign}/notify", headers=admin)
    assert notified.get_json() == {"queued": 1}


def test_prepare_then_install_with_activation(api_runtime: Runtime, app: Flask,
                                              client: FlaskClient,
                                              callers: dict[str, Caller]) -> None:
    """POST /prepare batch after batch (a retry with the same Idempotency-Key replays the
    answer and prepares nothing more; a contact is refused), then /install with activate
    activates the prepared hosted tokens."""
    from delivery import requests

    rt = api_runtime
    provision_service_tokens(rt)
    with rt.unit_of_work() as session:
        contact_id = make_contact(session, rt.clock).id
    outgoing_request, outgoing_serial, _ = _active(rt, app, contact_id, CHANGED_COMMUNE)
    admin = callers["dgcl_admin"].headers
    opened = client.post("/v1/campaigns", headers=admin, json={
        "name": "Communales préparées", "installation_date": rt.clock.now().date().isoformat(),
        "scope_kind": "province", "scope_codes": [PROVINCE], "funding": "quota"})
    campaign = opened.get_json()["id"]
    csv_text = "\n".join([
        HEADER,
        f"{KEPT_COMMUNE},president,{random_cin()},Salma,Alaoui,سلمى,العلوي,F,0661234570,"
        "s@b.ma",
        f"{CHANGED_COMMUNE},president,{random_cin()},Omar,Idrissi,عمر,الإدريسي,M,0661234571,"
        "o@b.ma"])
    imported = client.post(f"/v1/campaigns/{campaign}/import", headers=admin,
                           json={"csv": csv_text, "token_form": "hosted"})
    assert imported.get_json()["requests"] == 2, imported.get_json()
    url = f"/v1/campaigns/{campaign}/prepare"
    body = {"identity_check": "CIN and council minutes checked", "batch_size": 1,
            "max_batches": 1}

    refused = client.post(url, headers=callers["contact"].headers, json=body)
    assert refused.status_code == 403
    assert client.post(url, headers=admin, json={**body, "identity_check": "  "}
                       ).status_code == 422

    # the web page's form: an identity check of blanks is refused beside its field
    browser = web_login(app.test_client(), "admin")
    token = re.search(r'name="csrf_token" value="([^"]+)"',
                      browser.get(f"/web/campaigns/{campaign}").text)
    assert token
    blank = browser.post(f"/web/campaigns/{campaign}/prepare",
                         data={"identity_check": "  ", "csrf_token": token.group(1)})
    assert blank.status_code == 422
    assert 'id="error-campaign-prepare-identity_check"' in blank.text

    keyed = {**admin, "Idempotency-Key": "prepare-communales-1"}
    first = client.post(url, headers=keyed, json=body)
    assert first.status_code == 200, first.get_json()
    answer = first.get_json()
    assert (answer["batches"], answer["approved"], len(answer["personalised"]),
            answer["prepared"], answer["to_prepare"]) == (1, 1, 1, 1, 1)
    retry = client.post(url, headers=keyed, json=body)
    assert retry.status_code == 200 and retry.get_json() == answer
    assert retry.headers.get("Idempotent-Replayed") == "true"
    with rt.unit_of_work() as session:
        statuses = sorted(requests.get_request(session, s["request_id"]).status
                          for s in campaigns_seats(client, campaign, admin))
    assert statuses == ["personalised", "submitted"]  # the retry prepared nothing more

    rest = client.post(url, headers=admin, json={**body, "max_batches": 5})
    assert rest.status_code == 200, rest.get_json()
    assert (len(rest.get_json()["personalised"]), rest.get_json()["prepared"],
            rest.get_json()["to_prepare"]) == (1, 2, 0)
    nothing = client.post(url, headers=admin, json=body).get_json()
    assert (nothing["batches"], nothing["personalised"], nothing["to_prepare"]) == (0, [], 0)

    installed = client.post(f"/v1/campaigns/{campaign}/install", headers=admin,
                            json={"activate": True})
    assert installed.status_code == 200, installed.get_json()
    done = installed.get_json()
    assert done["revoked"] == [outgoing_serial]
    incoming = sorted(s["request_id"] for s in campaigns_seats(client, campaign, admin))
    assert sorted(done["activated"]) == incoming
    with rt.unit_of_work() as session:
        assert {requests.get_request(session, r).status for r in incoming} == {"active"}
        assert requests.get_request(session, outgoing_request).status == "ended"
    report = client.get(f"/v1/campaigns/{campaign}", headers=admin).get_json()
    assert report["blocked"] == [] and report["max_gap_days"] == 0


def campaigns_seats(client: FlaskClient, campaign: int, headers: dict[str, str]
                    ) -> list[dict[str, object]]:
    return [s for s in client.get(f"/v1/campaigns/{campaign}", headers=headers)
            .get_json()["seats"] if s["request_id"] is not None]

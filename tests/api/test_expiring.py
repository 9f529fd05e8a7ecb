"""Certificates expiring in the next 90 days, by province: the API (operators, the DGCL,
a contact for their own province) and the page, in French and Arabic."""

from __future__ import annotations

from datetime import timedelta

from flask import Flask
from flask.testing import FlaskClient

from api.runtime import Runtime
from pki import lifecycle
from tests.api.conftest import OTHER_PROVINCE, PROVINCE, Caller, make_user
from tests.api.test_csc import Sms, make_hosted
from tests.api.test_outbox_and_contact_change import web_login


def test_expiring_by_province(client: FlaskClient, app: Flask, api_runtime: Runtime,
                              callers: dict[str, Caller]) -> None:
    hosted = make_hosted(api_runtime, app, Sms(api_runtime, app))
    url = "/v1/reports/expiring"
    now = api_runtime.clock.now()
    assert client.get(url, headers=callers["operator"].headers).get_json()["total"] == 0
    with api_runtime.unit_of_work() as session:
        not_after = lifecycle.certificate_status(session, hosted.serial).not_after
    api_runtime.clock.advance(not_after - now - timedelta(days=30, hours=1))
    # the callers' bearer tokens have expired meanwhile: log in again
    callers = {"operator": make_user(api_runtime, app, "op2", "operator"),
               "dgcl_admin": make_user(api_runtime, app, "admin2", "dgcl_admin"),
               "contact": make_user(api_runtime, app, "contact3", "contact",
                                    province_code=PROVINCE),
               "other_contact": make_user(api_runtime, app, "contact4", "contact",
                                          province_code=OTHER_PROVINCE),
               "holder": make_user(api_runtime, app, "holder2", "holder")}
    for role in ("operator", "dgcl_admin", "contact"):
        answer = client.get(url, headers=callers[role].headers)
        assert answer.status_code == 200, answer.get_json()
        found = answer.get_json()
        assert found["days"] == 90 and found["total"] == 1
        (area,) = found["provinces"]
        assert area["province_code"] == PROVINCE and area["count"] == 1
        (cert,) = area["certificates"]
        assert cert["serial"] == hosted.serial and cert["days_left"] == 30
        assert cert["renewal_under_way"] is False and cert["cin"] == hosted.cin
    assert client.get(f"{url}?days=29", headers=callers["operator"].headers
                      ).get_json()["total"] == 0
    other = callers["other_contact"]
    assert client.get(url, headers=other.headers).get_json()["total"] == 0
    assert client.get(f"{url}?province={PROVINCE}", headers=other.headers).status_code == 403
    assert client.get(url, headers=callers["holder"].headers).status_code == 403

    browser = web_login(app.test_client(), "op2")
    page = browser.get("/web/expiring")
    assert page.status_code == 200
    assert "Certificats qui expirent bientôt" in page.text and hosted.cin in page.text
    assert f'id="expiring-{PROVINCE}"' in page.text
    browser.get("/web/lang/ar")
    arabic = browser.get("/web/expiring")
    assert 'dir="rtl"' in arabic.text and "شهادات تنتهي صلاحيتها قريبا" in arabic.text
    assert hosted.cin in arabic.text

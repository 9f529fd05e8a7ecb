"""Through HTTP: a contact changes a holder's mobile, the holder confirms it with the code
sent there; the operator sees the outbox alert (API, metrics, queue page) and retries every
dead notification at once."""

from __future__ import annotations

import re
from datetime import timedelta

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select, update

from api.runtime import Runtime
from api.wiring.flaskapp import wiring as app_wiring
from core.clock import FrozenClock
from delivery.backends import ConsoleEmailBackend, ConsoleInbox, ConsoleSmsBackend
from delivery.models import OUTBOX_DEAD, Holder, OutboxMessage
from delivery.outbox import OutboxWorker
from tests.api.conftest import PASSWORD, Caller, db_session
from tests.api.world import build as build_world


def test_a_contact_changes_the_mobile_and_only_the_holders_code_applies_it(
        api_runtime: Runtime, app: Flask, client: FlaskClient,
        callers: dict[str, Caller]) -> None:
    world = build_world(api_runtime, app, callers)
    with db_session(api_runtime) as db:
        old_mobile = db.get_one(Holder, world.holder_here).mobile
    url = f"/v1/holders/{world.holder_here}/contact-details"
    answer = client.post(url, json={"mobile": "0661 23 45 67"},
                         headers=callers["contact"].headers)
    assert answer.status_code == 200, answer.json
    assert answer.json["holder"]["mobile"] == old_mobile  # not applied yet
    assert [(p["channel"], p["new_hint"]) for p in answer.json["awaiting_confirmation"]] \
        == [("sms", "••••4567")]

    inbox = ConsoleInbox()
    with app.app_context():
        sealer = app_wiring(app).sealer()
    OutboxWorker(api_runtime.sessions, api_runtime.clock, sms=ConsoleSmsBackend(inbox),
                 email=ConsoleEmailBackend(inbox), sealer=sealer).drain()
    assert any("+212661234567"[-4:] in body for _, body in inbox.for_recipient(old_mobile))
    codes = [re.search(r"\b(\d{6})\b", body) for _, body in inbox.for_recipient(
        "+212661234567")]
    assert len(codes) == 1 and codes[0]
    code = codes[0].group(1)

    confirm = f"{url}/confirm"
    assert client.post(confirm, json={"channel": "sms", "code": code},
                       headers=callers["contact"].headers).status_code == 403
    wrong = client.post(confirm, json={"channel": "sms",
                                       "code": f"{(int(code) + 1) % 10**6:06d}"},
                        headers=callers["holder"].headers)
    assert wrong.status_code == 403 and wrong.json["attempts_left"] >= 1
    assert code not in wrong.text
    done = client.post(confirm, json={"channel": "sms", "code": code},
                       headers=callers["holder"].headers)
    assert done.status_code == 200, done.json
    assert done.json["mobile"] == "+212661234567"
    again = client.post(confirm, json={"channel": "sms", "code": code},
                        headers=callers["holder"].headers)
    assert again.status_code == 404


def test_the_operator_sees_the_outbox_alert_and_retries_every_dead_message(
        api_runtime: Runtime, app: Flask, client: FlaskClient, clock: FrozenClock,
        callers: dict[str, Caller]) -> None:
    world = build_world(api_runtime, app, callers)
    with db_session(api_runtime) as db:  # the world's PIN notices are not this test's
        db.execute(update(OutboxMessage).values(status="sent"))
        db.commit()
        # Rows other tests left in the shared database are not this test's either.
        before = db.scalar(select(func.max(OutboxMessage.id))) or 0
    client.post(f"/v1/holders/{world.holder_here}/contact-details",
                json={"email": "nouveau@example.ma"}, headers=callers["contact"].headers)
    with db_session(api_runtime) as db:
        db.execute(update(OutboxMessage).where(OutboxMessage.template == "contact.changed",
                                               OutboxMessage.id > before)
                   .values(status=OUTBOX_DEAD, last_error="twilio 503"))
        # the code notice has waited two hours: late
        db.execute(update(OutboxMessage).where(OutboxMessage.template == "contact.code",
                                               OutboxMessage.id > before)
                   .values(created_at=clock.now() - timedelta(hours=2)))
        db.commit()
    operator = callers["operator"].headers
    stats = client.get("/v1/outbox/stats", headers=operator).json
    assert stats["alert"] is True and stats["oldest_pending_minutes"] >= 120
    purposes = {p["purpose"]: p for p in stats["by_purpose"]}
    assert purposes["contact.changed"]["dead"] == 2 and purposes["contact.code"]["pending"] == 1
    metrics = client.get("/metrics").text
    assert "tawqi_outbox_alert 1.0" in metrics
    assert 'tawqi_outbox_purpose_messages{purpose="contact.changed",status="dead"} 2.0' \
        in metrics
    assert "tawqi_outbox_oldest_pending_age_seconds 7200.0" in metrics

    page = web_login(client, "operator").get("/web/queue")
    assert page.status_code == 200
    assert 'id="outbox-alert"' in page.text and "tawqi outbox retry-dead" in page.text

    assert client.post("/v1/outbox/retry-dead", json={"purpose": "nope"},
                       headers=operator).status_code == 422
    retried = client.post("/v1/outbox/retry-dead", json={"purpose": "contact.changed"},
                          headers=operator)
    assert retried.status_code == 200 and len(retried.json["retried"]) == 2
    with db_session(api_runtime) as db:
        assert not db.scalars(select(OutboxMessage).where(
            OutboxMessage.status == OUTBOX_DEAD)).all()


def web_login(client: FlaskClient, username: str) -> FlaskClient:
    form = client.get("/web/login").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', form)
    assert token
    answer = client.post("/web/login", data={"username": username, "password": PASSWORD,
                                             "csrf_token": token.group(1)})
    assert answer.status_code == 303, answer.text
    return client

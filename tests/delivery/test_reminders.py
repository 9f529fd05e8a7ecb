"""Scheduled delivery work: reminders of overdue hand-overs to the contact, and the purge of
PIN envelopes nobody will send any more. (Expiry warnings need the CA: tests/api/test_jobs.py.)
"""

from __future__ import annotations

import json
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from core.clock import FrozenClock
from delivery import batches, envelopes, requests
from delivery.messages import render
from delivery.models import (
    ENVELOPE_RESET_CODE,
    OUTBOX_DEAD,
    CertificateRequest,
    OutboxMessage,
    SecretEnvelope,
)
from delivery.outbox import Notification, enqueue
from delivery.personalisation import personalise_request
from delivery.policy import DeliveryPolicy
from delivery.reminders import send_handover_reminders
from tests.delivery.conftest import (
    COMMUNE_A,
    COMMUNE_B,
    KeyOnlyPersonaliser,
    ServiceTokens,
    make_contact,
    make_holder,
)

POLICY = DeliveryPolicy()


def _delivered(session: Session, clock: FrozenClock, tokens: ServiceTokens, contact_id: int,
               communes: tuple[str, ...]) -> list[CertificateRequest]:
    made = []
    for commune in communes:
        holder = make_holder(session, clock, commune=commune)
        request = requests.submit_request(session, clock, contact_id=contact_id,
                                          holder_id=holder.id, token_form="device",
                                          actor="contact")
        requests.approve_request(session, clock, request.id, actor="ra", identity_check="ok")
        personalise_request(session, clock, request.id,
                            personaliser=KeyOnlyPersonaliser(tokens.library, tokens.so_pin),
                            sealer=tokens.sealer, actor="operator", policy=POLICY)
        made.append(request)
    batch = batches.prepare_batch(session, clock, made[0].province_code, actor="operator")
    batches.dispatch_batch(session, clock, batch.id, tracking_number="EE123456785MA",
                           actor="operator", policy=POLICY)
    batches.receive_batch(session, clock, batch.id, actor="contact", contact_id=contact_id)
    return made


def _reminders(session: Session) -> list[OutboxMessage]:
    return list(session.scalars(select(OutboxMessage).where(
        OutboxMessage.template == "handover.reminder").order_by(OutboxMessage.id)))


def test_overdue_handovers_remind_the_contact_once_a_day(
        session: Session, clock: FrozenClock, service_tokens: ServiceTokens) -> None:
    contact = make_contact(session, clock)
    first, second = _delivered(session, clock, service_tokens, contact.id,
                               (COMMUNE_A, COMMUNE_B))
    before = len(_reminders(session))
    assert send_handover_reminders(session, clock, overdue_days=7, actor="scheduler") == 0
    clock.advance(timedelta(days=8))
    batches.record_handover(session, clock, first.id, handed_to="Karim Benali",
                            acknowledgement="R-001", actor="contact", contact_id=contact.id,
                            policy=POLICY)
    assert send_handover_reminders(session, clock, overdue_days=7, actor="scheduler") == 1
    # The same day again (a second worker, a run by hand): no second email.
    assert send_handover_reminders(session, clock, overdue_days=7, actor="scheduler") == 0
    sent = _reminders(session)[before:]
    assert len(sent) == 1 and sent[0].recipient == contact.email
    params = json.loads(sent[0].params)
    assert params["count"] == 1 and f"{second.id}" in params["items"]
    body = render("handover.reminder", "email", params).body
    assert "depuis plus de 7 jours : 1." in body and "أكثر من 7 أيام" in body
    clock.advance(timedelta(days=1))
    assert send_handover_reminders(session, clock, overdue_days=7, actor="scheduler") == 1
    assert len(_reminders(session)) == before + 2


def test_undeliverable_envelopes_are_erased_after_the_retention(
        session: Session, clock: FrozenClock, service_tokens: ServiceTokens) -> None:
    contact = make_contact(session, clock)
    holder = make_holder(session, clock, contact=contact)
    dead = envelopes.seal(session, clock, service_tokens.sealer, purpose=ENVELOPE_RESET_CODE,
                          holder_id=holder.id, secret="482917")
    waiting = envelopes.seal(session, clock, service_tokens.sealer,
                             purpose=ENVELOPE_RESET_CODE, holder_id=holder.id, secret="120934")
    for envelope in (dead, waiting):
        enqueue(session, clock, Notification(
            channel="sms", recipient=holder.mobile, template="reset.code",
            dedupe_key=f"reset.code:{envelope.id}", params={"ttl_minutes": 10},
            envelope_id=envelope.id, holder_id=holder.id))
    # A device token's PIN waiting for its hand-over: sealed, no message yet.
    (request,) = _delivered(session, clock, service_tokens, contact.id, (COMMUNE_B,))
    # The provider refused the first message for good (as the worker records it).
    session.execute(update(OutboxMessage).where(OutboxMessage.envelope_id == dead.id)
                    .values(status=OUTBOX_DEAD, last_error="21211 invalid number"))
    assert envelopes.purge_dead(session, clock, retention_days=30, actor="scheduler") == 0
    clock.advance(timedelta(days=31))
    assert envelopes.purge_dead(session, clock, retention_days=30, actor="scheduler") == 1
    session.expire_all()
    assert session.get_one(SecretEnvelope, dead.id).ciphertext is None
    assert session.get_one(SecretEnvelope, dead.id).destroyed_reason.startswith("purged")
    assert session.get_one(SecretEnvelope, waiting.id).ciphertext is not None  # pending
    assert request.pin_envelope_id is not None
    assert session.get_one(SecretEnvelope, request.pin_envelope_id).ciphertext is not None
    assert envelopes.purge_dead(session, clock, retention_days=30, actor="scheduler") == 0


"""A holder's mobile or email changes only when the holder confirms it with a code sent to
it; the old phone and email are told; PINs and codes keep going to the confirmed values."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core.audit import AuditEvent
from core.clock import FrozenClock
from core.db import transaction
from delivery import contact_change, envelopes, holders, notices
from delivery.backends import ConsoleEmailBackend, ConsoleInbox, ConsoleSmsBackend
from delivery.errors import (
    ContactChangeClosed,
    ContactChangeInvalid,
    ContactChangeNotFound,
    TokenLayerUnavailable,
)
from delivery.models import ENVELOPE_RESET_CODE, ContactChange, Holder, OutboxMessage
from delivery.outbox import OutboxWorker
from delivery.policy import DeliveryPolicy
from tests.delivery.conftest import ServiceTokens, make_holder, random_mobile

POLICY = DeliveryPolicy(otp_max_attempts=3, contact_confirm_ttl_hours=72)


def change_mobile(sessions: sessionmaker[Session], clock: FrozenClock, tokens: ServiceTokens,
                  new_mobile: str) -> tuple[int, str, str]:
    """A holder whose contact asks for a new mobile: (holder id, old mobile, old email)."""
    with transaction(sessions) as db:
        holder = make_holder(db, clock)
        old_mobile, old_email = holder.mobile, holder.email
        holders.update_contact_details(db, clock, holder.id, actor="contact:samira",
                                       sealer=tokens.sealer, policy=POLICY, mobile=new_mobile)
        return holder.id, old_mobile, old_email


def deliver(sessions: sessionmaker[Session], clock: FrozenClock,
            tokens: ServiceTokens) -> ConsoleInbox:
    inbox = ConsoleInbox()
    OutboxWorker(sessions, clock, sms=ConsoleSmsBackend(inbox), email=ConsoleEmailBackend(inbox),
                 sealer=tokens.sealer).drain()
    return inbox


def code_in(inbox: ConsoleInbox, to: str) -> str:
    bodies = [body for channel, body in inbox.for_recipient(to) if channel == "sms"]
    assert len(bodies) == 1, bodies
    found = re.search(r"\b(\d{6})\b", bodies[0])
    assert found
    return found.group(1)


def test_a_new_mobile_waits_for_the_holders_code_and_the_old_ones_are_told(
        sessions: sessionmaker[Session], clock: FrozenClock,
        service_tokens: ServiceTokens) -> None:
    new_mobile = random_mobile()
    holder_id, old_mobile, old_email = change_mobile(sessions, clock, service_tokens,
                                                     new_mobile)
    with transaction(sessions) as db:
        holder = db.get_one(Holder, holder_id)
        assert holder.mobile == old_mobile  # not applied yet
        pending = contact_change.pending_changes(db, clock, holder_id)
        assert [(p.channel, p.new_hint, p.requested_by) for p in pending] == [
            ("sms", "••••" + new_mobile[-4:], "contact:samira")]
        # a code asked for now still goes to the confirmed (old) mobile
        notices.enqueue_reset_code(db, clock, challenge_id="c-1", holder=holder,
                                   envelope_id=envelopes.seal(
                                       db, clock, service_tokens.sealer,
                                       purpose=ENVELOPE_RESET_CODE, holder_id=holder_id,
                                       secret="111111").id,
                                   ttl_minutes=10)
        messages = {(m.template, m.channel, m.recipient) for m in db.scalars(
            select(OutboxMessage).where(OutboxMessage.holder_id == holder_id))}
        event = db.scalars(select(AuditEvent).where(
            AuditEvent.action == "delivery.holder.contact_change_requested",
            AuditEvent.object_id == str(holder_id))).one()
        assert event.actor == "contact:samira"
        assert new_mobile not in str(event.summary_dict) and old_mobile not in \
            str(event.summary_dict)
    assert messages == {("contact.changed", "sms", old_mobile),
                        ("contact.changed", "email", old_email),
                        ("contact.code", "sms", new_mobile),
                        ("reset.code", "sms", old_mobile)}
    inbox = deliver(sessions, clock, service_tokens)
    old_notice = [b for c, b in inbox.for_recipient(old_mobile) if "changé" in b]
    assert old_notice and new_mobile[-4:] in old_notice[0] and new_mobile not in old_notice[0]
    code = code_in(inbox, new_mobile)
    with transaction(sessions) as db:
        stored = db.scalars(select(ContactChange).where(
            ContactChange.holder_id == holder_id)).one()
        assert code not in stored.code_hash

    holder_after = contact_change.confirm_change(sessions, clock, holder_id=holder_id,
                                                 channel="sms", code=code,
                                                 actor=f"holder:{holder_id}")
    assert holder_after.mobile == new_mobile
    with transaction(sessions) as db:
        assert db.get_one(Holder, holder_id).mobile == new_mobile
        assert db.scalars(select(AuditEvent).where(
            AuditEvent.action == "delivery.holder.contact_confirmed",
            AuditEvent.object_id == str(holder_id))).one().actor == f"holder:{holder_id}"
    with pytest.raises(ContactChangeNotFound):  # used once
        contact_change.confirm_change(sessions, clock, holder_id=holder_id, channel="sms",
                                      code=code, actor="holder")


def test_wrong_codes_are_counted_and_the_last_closes_the_change(
        sessions: sessionmaker[Session], clock: FrozenClock,
        service_tokens: ServiceTokens) -> None:
    new_mobile = random_mobile()
    holder_id, old_mobile, _ = change_mobile(sessions, clock, service_tokens, new_mobile)
    code = code_in(deliver(sessions, clock, service_tokens), new_mobile)
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    for left in (2, 1):
        with pytest.raises(ContactChangeInvalid) as caught:
            contact_change.confirm_change(sessions, clock, holder_id=holder_id,
                                          channel="sms", code=wrong, actor="holder")
        assert caught.value.extras["attempts_left"] == left
    with pytest.raises(ContactChangeClosed):
        contact_change.confirm_change(sessions, clock, holder_id=holder_id, channel="sms",
                                      code=wrong, actor="holder")
    with pytest.raises(ContactChangeNotFound):  # even the right code is too late now
        contact_change.confirm_change(sessions, clock, holder_id=holder_id, channel="sms",
                                      code=code, actor="holder")
    with transaction(sessions) as db:
        assert db.get_one(Holder, holder_id).mobile == old_mobile


def test_an_expired_change_is_closed_and_a_new_one_supersedes_the_old(
        sessions: sessionmaker[Session], clock: FrozenClock,
        service_tokens: ServiceTokens) -> None:
    first, second = random_mobile(), random_mobile()
    holder_id, _, _ = change_mobile(sessions, clock, service_tokens, first)
    with transaction(sessions) as db:
        holders.update_contact_details(db, clock, holder_id, actor="operator",
                                       sealer=service_tokens.sealer, policy=POLICY,
                                       mobile=second)
        states = sorted(c.status for c in db.scalars(select(ContactChange).where(
            ContactChange.holder_id == holder_id)))
    assert states == ["pending", "superseded"]
    code = code_in(deliver(sessions, clock, service_tokens), second)
    clock.advance(timedelta(hours=73))
    with pytest.raises(ContactChangeClosed):
        contact_change.confirm_change(sessions, clock, holder_id=holder_id, channel="sms",
                                      code=code, actor="holder")


def test_a_new_email_gets_its_code_by_email_and_needs_the_sealer(
        session: Session, clock: FrozenClock, service_tokens: ServiceTokens) -> None:
    holder = make_holder(session, clock)
    with pytest.raises(TokenLayerUnavailable):
        holders.update_contact_details(session, clock, holder.id, actor="contact",
                                       email="new@example.ma")
    old_email = holder.email
    holders.update_contact_details(session, clock, holder.id, actor="contact",
                                   sealer=service_tokens.sealer, email="New@Example.ma")
    assert holder.email == old_email
    codes = session.scalars(select(OutboxMessage).where(
        OutboxMessage.holder_id == holder.id, OutboxMessage.template == "contact.code")).all()
    assert [(m.channel, m.recipient) for m in codes] == [("email", "New@example.ma")]
    # the same value again: nothing to confirm, the pending change is dropped
    holders.update_contact_details(session, clock, holder.id, actor="contact",
                                   sealer=service_tokens.sealer, email=old_email)
    assert contact_change.pending_changes(session, clock, holder.id) == []

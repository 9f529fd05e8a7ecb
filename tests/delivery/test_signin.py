"""A holder's sign-in code (delivery.signin): sent only to a registered holder's mobile,
the same answer for an unknown CIN, hashed at rest, single-use, short-lived, a limited
number of guesses, each wrong guess committed."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from core.audit import AuditEvent
from core.clock import FrozenClock
from core.db import transaction
from delivery import envelopes, signin
from delivery.backends import ConsoleEmailBackend, ConsoleInbox, ConsoleSmsBackend
from delivery.errors import SignInCodeInvalid
from delivery.models import Holder, OutboxMessage, SecretEnvelope, SignInChallenge
from delivery.outbox import OutboxWorker
from delivery.policy import DeliveryPolicy
from tests.delivery.conftest import ServiceTokens, make_holder
from tests.secrets_at_rest import assert_kept_secret

POLICY = DeliveryPolicy(otp_ttl_minutes=10, otp_max_attempts=3)


def _code(sessions: sessionmaker[Session], tokens: ServiceTokens, challenge_id: str) -> str:
    with transaction(sessions) as db:
        envelope_id = db.scalars(select(OutboxMessage.envelope_id).where(
            OutboxMessage.dedupe_key == f"signin.code:{challenge_id}")).one()
        envelope = db.get_one(SecretEnvelope, envelope_id)
        return envelopes.open_envelope(tokens.sealer, envelope.id, envelope.purpose,
                                       envelope.holder_id, envelope.ciphertext)


def _asked(sessions: sessionmaker[Session], clock: FrozenClock, tokens: ServiceTokens, *,
           client: str = "x") -> tuple[Holder, str, str]:
    """A new holder asks for a sign-in code: the holder, the challenge id, the code sent."""
    with transaction(sessions) as db:
        holder = make_holder(db, clock)
        info = signin.request_code(db, clock, tokens.sealer, cin=holder.cin, policy=POLICY,
                                   client=client)
    return holder, info.challenge_id, _code(sessions, tokens, info.challenge_id)


@pytest.mark.hsm
def test_a_code_opens_once_and_an_unknown_cin_learns_nothing(
        sessions: sessionmaker[Session], clock: FrozenClock,
        service_tokens: ServiceTokens) -> None:
    with transaction(sessions) as db:
        holder = make_holder(db, clock)
        cin, holder_id = holder.cin, holder.id
        before = db.scalar(select(func.count(OutboxMessage.id)))
        unknown = signin.request_code(db, clock, service_tokens.sealer, cin="ZZ999999",
                                      policy=POLICY, client="10.0.0.1")
        assert db.scalar(select(func.count(OutboxMessage.id))) == before  # nothing sent
        info = signin.request_code(db, clock, service_tokens.sealer, cin=cin.lower(),
                                   policy=POLICY, client="10.0.0.1")
        assert type(unknown) is type(info) and unknown.expires_at == info.expires_at
        stored = db.get_one(SignInChallenge, info.challenge_id)
        assert stored.holder_id == holder_id and stored.code_hash.startswith("$argon2id$")
    code = _code(sessions, service_tokens, info.challenge_id)
    assert code not in stored.code_hash

    for cid, who in ((unknown.challenge_id, "ZZ999999"), (info.challenge_id, "AB000001")):
        with pytest.raises(SignInCodeInvalid):
            signin.confirm_code(sessions, clock, challenge_id=cid, cin=who, code=code,
                                client="x")
    assert signin.confirm_code(sessions, clock, challenge_id=info.challenge_id, cin=cin,
                               code=code, client="x") == holder_id
    with pytest.raises(SignInCodeInvalid):  # once
        signin.confirm_code(sessions, clock, challenge_id=info.challenge_id, cin=cin,
                            code=code, client="x")


@pytest.mark.hsm
def test_wrong_guesses_are_counted_and_close_the_code(
        sessions: sessionmaker[Session], clock: FrozenClock,
        service_tokens: ServiceTokens) -> None:
    holder, challenge_id, code = _asked(sessions, clock, service_tokens)
    cin = holder.cin
    wrong = "000000" if code != "000000" else "111111"
    for _ in range(POLICY.otp_max_attempts):
        with pytest.raises(SignInCodeInvalid):
            signin.confirm_code(sessions, clock, challenge_id=challenge_id, cin=cin,
                                code=wrong, client="x")
    with transaction(sessions) as db:
        assert db.get_one(SignInChallenge, challenge_id).attempts == 3
    with pytest.raises(SignInCodeInvalid):  # closed, even with the right code
        signin.confirm_code(sessions, clock, challenge_id=challenge_id, cin=cin,
                            code=code, client="x")


@pytest.mark.hsm
def test_a_code_expires(sessions: sessionmaker[Session], clock: FrozenClock,
                        service_tokens: ServiceTokens) -> None:
    holder, challenge_id, code = _asked(sessions, clock, service_tokens)
    cin = holder.cin
    clock.advance(timedelta(minutes=POLICY.otp_ttl_minutes, seconds=1))
    with pytest.raises(SignInCodeInvalid):
        signin.confirm_code(sessions, clock, challenge_id=challenge_id, cin=cin,
                            code=code, client="x")


@pytest.mark.hsm
def test_the_code_is_audited_and_kept_nowhere_in_clear(
        sessions: sessionmaker[Session], clock: FrozenClock, service_tokens: ServiceTokens,
        caplog: pytest.LogCaptureFixture) -> None:
    """Every state change of a challenge writes its audit event in its transaction; the
    code, asked for, sent and used, is in no row of the database and in no log line."""
    caplog.set_level(logging.DEBUG)
    holder, challenge_id, code = _asked(sessions, clock, service_tokens, client="10.0.0.9")
    cin = holder.cin
    inbox = ConsoleInbox()
    OutboxWorker(sessions, clock, sms=ConsoleSmsBackend(inbox), email=ConsoleEmailBackend(),
                 sealer=service_tokens.sealer).drain()
    assert any(code in body for _channel, body in inbox.for_recipient(holder.mobile))
    wrong = "000000" if code != "000000" else "111111"
    with pytest.raises(SignInCodeInvalid):
        signin.confirm_code(sessions, clock, challenge_id=challenge_id, cin=cin,
                            code=wrong, client="10.0.0.9")
    signin.confirm_code(sessions, clock, challenge_id=challenge_id, cin=cin, code=code,
                        client="10.0.0.9")
    with transaction(sessions) as db:
        actions = db.scalars(select(AuditEvent.action).where(
            AuditEvent.object_id == challenge_id).order_by(AuditEvent.seq)).all()
        assert actions == ["delivery.signin.requested", "delivery.signin.wrong_code",
                           "delivery.signin.verified"]
        assert "SMS to " in caplog.text  # the log is captured: the code went out masked
        assert_kept_secret(db, caplog.text, code)

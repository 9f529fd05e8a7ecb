"""A holder's sign-in code (delivery.signin): sent only to a registered holder's mobile,
the same answer for an unknown CIN, hashed at rest, single-use, short-lived, a limited
number of guesses, each wrong guess committed."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from core.clock import FrozenClock
from core.db import transaction
from delivery import envelopes, signin
from delivery.errors import SignInCodeInvalid
from delivery.models import OutboxMessage, SecretEnvelope, SignInChallenge
from delivery.policy import DeliveryPolicy
from tests.delivery.conftest import ServiceTokens, make_holder

POLICY = DeliveryPolicy(otp_ttl_minutes=10, otp_max_attempts=3)


def _code(sessions: sessionmaker[Session], tokens: ServiceTokens, challenge_id: str) -> str:
    with transaction(sessions) as db:
        envelope_id = db.scalars(select(OutboxMessage.envelope_id).where(
            OutboxMessage.dedupe_key == f"signin.code:{challenge_id}")).one()
        envelope = db.get_one(SecretEnvelope, envelope_id)
        return envelopes.open_envelope(tokens.sealer, envelope.id, envelope.purpose,
                                       envelope.holder_id, envelope.ciphertext)


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
    with transaction(sessions) as db:
        holder = make_holder(db, clock)
        cin = holder.cin
        info = signin.request_code(db, clock, service_tokens.sealer, cin=cin,
                                   policy=POLICY, client="x")
    code = _code(sessions, service_tokens, info.challenge_id)
    wrong = "000000" if code != "000000" else "111111"
    for _ in range(POLICY.otp_max_attempts):
        with pytest.raises(SignInCodeInvalid):
            signin.confirm_code(sessions, clock, challenge_id=info.challenge_id, cin=cin,
                                code=wrong, client="x")
    with transaction(sessions) as db:
        assert db.get_one(SignInChallenge, info.challenge_id).attempts == 3
    with pytest.raises(SignInCodeInvalid):  # closed, even with the right code
        signin.confirm_code(sessions, clock, challenge_id=info.challenge_id, cin=cin,
                            code=code, client="x")


@pytest.mark.hsm
def test_a_code_expires(sessions: sessionmaker[Session], clock: FrozenClock,
                        service_tokens: ServiceTokens) -> None:
    with transaction(sessions) as db:
        holder = make_holder(db, clock)
        cin = holder.cin
        info = signin.request_code(db, clock, service_tokens.sealer, cin=cin,
                                   policy=POLICY, client="x")
    code = _code(sessions, service_tokens, info.challenge_id)
    clock.advance(timedelta(minutes=POLICY.otp_ttl_minutes, seconds=1))
    with pytest.raises(SignInCodeInvalid):
        signin.confirm_code(sessions, clock, challenge_id=info.challenge_id, cin=cin,
                            code=code, client="x")

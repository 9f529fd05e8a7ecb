"""A holder signs in to the web pages without a password: CIN, then a one-time code sent
by SMS to the registered mobile.

1. :func:`request_code` (the CIN typed on the sign-in page): when the CIN names a holder,
   a six-digit code goes by SMS through the outbox; only an argon2 hash of it is kept,
   bound to the challenge id, and the code waits in a sealed envelope until it is sent.
   A new request closes the holder's open challenge. The answer is the same whether the
   CIN exists or not (a challenge id nobody can redeem, after the same hashing work), so
   the page reveals nothing about who is registered. Rate limits per CIN and per address
   are the caller's (``api.ratelimit``), counted for every CIN alike.
2. :func:`confirm_code` (the challenge id, the CIN again and the code): each wrong guess
   is committed before the refusal; the code is single-use, expires after
   ``otp_ttl_minutes`` and allows ``otp_max_attempts`` guesses. Every refusal is the same
   :class:`SignInCodeInvalid`. It returns the holder's id; issuing the session is the
   accounts service's job.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from core.audit import record
from core.clock import Clock, as_utc
from core.db import transaction
from delivery import envelopes, notices
from delivery.envelopes import Sealer
from delivery.errors import InvalidHolder, SignInCodeInvalid
from delivery.models import (
    ENVELOPE_SIGNIN_CODE,
    RESET_FAILED,
    RESET_OPEN,
    RESET_USED,
    Holder,
    SignInChallenge,
)
from delivery.policy import DeliveryPolicy
from delivery.validation import normalise_cin

CODE_DIGITS = 6
_HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
_DUMMY = _HASHER.hash("tawqi-signin-dummy")


@dataclass(frozen=True)
class SignInChallengeInfo:
    """What the sign-in page may know: an id and an expiry, never the code nor whether
    the CIN exists."""

    challenge_id: str
    expires_at: datetime


def _material(challenge_id: str, code: str) -> str:
    return f"signin:{challenge_id}:{code}"


def _cin(cin: str) -> str:
    try:
        return normalise_cin(cin, InvalidHolder)
    except InvalidHolder:
        return ""


def request_code(session: Session, clock: Clock, sealer: Sealer, *, cin: str,
                 policy: DeliveryPolicy, client: str) -> SignInChallengeInfo:
    """Send a sign-in code to the mobile of the holder ``cin`` names, if any."""
    now = clock.now()
    challenge_id = str(uuid.uuid4())
    expires = now + timedelta(minutes=policy.otp_ttl_minutes)
    normalised = _cin(cin)
    holder = session.scalar(select(Holder).where(Holder.cin == normalised)) \
        if normalised else None
    code = "".join(secrets.choice("0123456789") for _ in range(CODE_DIGITS))
    code_hash = _HASHER.hash(_material(challenge_id, code))  # the same work either way
    if holder is None or not holder.mobile:
        record(session, clock, actor="anonymous", action="delivery.signin.unknown",
               object_type="signin", object_id=challenge_id, summary={"client": client})
        return SignInChallengeInfo(challenge_id, expires)
    session.execute(update(SignInChallenge)
                    .where(SignInChallenge.holder_id == holder.id,
                           SignInChallenge.status == RESET_OPEN)
                    .values(status=RESET_FAILED, closed_at=now)
                    .execution_options(synchronize_session=False))
    envelope = envelopes.seal(session, clock, sealer, purpose=ENVELOPE_SIGNIN_CODE,
                              holder_id=holder.id, secret=code)
    del code
    session.add(SignInChallenge(id=challenge_id, holder_id=holder.id, code_hash=code_hash,
                                status=RESET_OPEN, attempts=0,
                                max_attempts=policy.otp_max_attempts, created_at=now,
                                expires_at=expires))
    session.flush()
    notices.enqueue_signin_code(session, clock, challenge_id=challenge_id, holder=holder,
                                envelope_id=envelope.id, ttl_minutes=policy.otp_ttl_minutes)
    record(session, clock, actor="anonymous", action="delivery.signin.requested",
           object_type="signin", object_id=challenge_id,
           summary={"holder_id": holder.id, "client": client,
                    "expires_at": expires.isoformat()})
    return SignInChallengeInfo(challenge_id, expires)


def _verify(code_hash: str, material: str) -> bool:
    try:
        return _HASHER.verify(code_hash, material)
    except (VerificationError, InvalidHashError):
        return False


def confirm_code(sessions: sessionmaker[Session], clock: Clock, *, challenge_id: str,
                 cin: str, code: str, client: str) -> int:
    """The holder's id when ``code`` opens the open challenge ``challenge_id`` of the
    holder ``cin`` names; :class:`SignInCodeInvalid` otherwise (a wrong guess is counted
    and committed first)."""
    normalised = _cin(cin)
    code = str(code).strip()[:16]
    refused = SignInCodeInvalid("this code is wrong or no longer valid: ask for a new one",
                                field="code")
    with transaction(sessions) as session:
        owner = session.scalar(select(Holder.id).where(Holder.cin == normalised)) \
            if normalised else None
        challenge = None if owner is None else session.scalar(
            select(SignInChallenge)
            .where(SignInChallenge.id == str(challenge_id)[:36],
                   SignInChallenge.holder_id == owner)
            .with_for_update())
        now = clock.now()
        if challenge is None or challenge.status != RESET_OPEN or \
                as_utc(challenge.expires_at) <= now:
            _verify(_DUMMY, code)  # the same work as a live challenge
            raise refused
        if _verify(challenge.code_hash, _material(challenge.id, code)):
            challenge.status = RESET_USED
            challenge.closed_at = now
            record(session, clock, actor="anonymous", action="delivery.signin.verified",
                   object_type="signin", object_id=challenge.id,
                   summary={"holder_id": challenge.holder_id, "client": client})
            return challenge.holder_id
        challenge.attempts += 1
        left = challenge.max_attempts - challenge.attempts
        if left <= 0:
            challenge.status = RESET_FAILED
            challenge.closed_at = now
        record(session, clock, actor="anonymous", action="delivery.signin.wrong_code",
               object_type="signin", object_id=challenge.id,
               summary={"holder_id": challenge.holder_id, "attempts_left": max(left, 0),
                        "client": client})
    raise refused

"""PIN reset: a holder who forgot the PIN or locked the token gets a new one by SMS.

1. :func:`request_pin_reset` (holder gives their CIN): a one-time code goes by SMS to the
   registered mobile. Only an argon2 hash of the code is kept (bound to the challenge id);
   the code itself waits in a sealed envelope until the SMS is sent. Rate-limited per holder
   per day; a new request supersedes the holder's open challenge.
2. :func:`confirm_pin_reset` (holder gives the code and their CIN again; the challenge must
   be theirs, another holder's id is "not found" and costs it no attempt): the security officer
   resets the token's PIN (which also clears the lockout), the new PIN goes by SMS (sealed
   until sent) and the email address gets a security notice without it. The holder must
   change the PIN again before signing.

A code is single-use, expires after ``otp_ttl_minutes`` and allows ``otp_max_attempts``
guesses; each wrong guess is committed before the error is raised, which is why
:func:`confirm_pin_reset` runs its own transactions (it takes ``sessions``).
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

import hsm
from core.audit import record
from core.clock import Clock, as_utc
from core.db import transaction
from delivery import envelopes, notices
from delivery.envelopes import Sealer
from delivery.errors import (
    HolderNotFound,
    IllegalTransition,
    InvalidHolder,
    ResetChallengeClosed,
    ResetChallengeInvalid,
    ResetChallengeNotFound,
    ResetRateLimited,
    TokenLayerUnavailable,
)
from delivery.holders import find_by_cin, get_holder
from delivery.models import (
    ENVELOPE_RESET_CODE,
    ENVELOPE_RESET_PIN,
    RESET_FAILED,
    RESET_OPEN,
    RESET_USED,
    Holder,
    PinResetChallenge,
)
from delivery.policy import DeliveryPolicy
from delivery.requests import current_credential, get_request
from delivery.validation import normalise_cin

CODE_DIGITS = 6
# Light argon2id parameters: the code lives minutes and allows a handful of guesses; the
# hash only has to make a stolen database useless within the code's lifetime.
_HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)


@dataclass(frozen=True)
class ResetChallengeInfo:
    """What the holder (and the API) may know: never the code."""

    challenge_id: str
    expires_at: datetime
    phone_hint: str  # the last digits of the number the code went to


@dataclass(frozen=True)
class ResetOutcome:
    request_id: int
    phone_hint: str


def _material(challenge_id: str, code: str) -> str:
    return f"{challenge_id}:{code}"


def request_pin_reset(session: Session, clock: Clock, sealer: Sealer, *, cin: str,
                      actor: str, policy: DeliveryPolicy) -> ResetChallengeInfo:
    """Send a one-time code to the holder's registered mobile."""
    holder = find_by_cin(session, cin)
    if holder is None:
        raise HolderNotFound("no holder with this CIN", field="cin")
    credential = current_credential(session, holder.id)
    if credential is None:
        raise IllegalTransition("this holder has no token in hand to reset",
                                holder_id=holder.id)
    now = clock.now()
    recent = session.scalar(select(func.count(PinResetChallenge.id)).where(
        PinResetChallenge.holder_id == holder.id,
        PinResetChallenge.created_at > now - timedelta(days=1))) or 0
    if recent >= policy.pin_reset_max_per_day:
        raise ResetRateLimited(f"at most {policy.pin_reset_max_per_day} PIN resets a day",
                               retry_after_hours=24)
    session.execute(update(PinResetChallenge)
                    .where(PinResetChallenge.holder_id == holder.id,
                           PinResetChallenge.status == RESET_OPEN)
                    .values(status=RESET_FAILED, closed_at=now)
                    .execution_options(synchronize_session=False))
    challenge_id = str(uuid.uuid4())
    code = "".join(secrets.choice("0123456789") for _ in range(CODE_DIGITS))
    envelope = envelopes.seal(session, clock, sealer, purpose=ENVELOPE_RESET_CODE,
                              holder_id=holder.id, secret=code)
    challenge = PinResetChallenge(
        id=challenge_id, holder_id=holder.id, request_id=credential.id,
        code_hash=_HASHER.hash(_material(challenge_id, code)), status=RESET_OPEN,
        attempts=0, max_attempts=policy.otp_max_attempts, created_at=now,
        expires_at=now + timedelta(minutes=policy.otp_ttl_minutes))
    del code
    session.add(challenge)
    session.flush()
    notices.enqueue_reset_code(session, clock, challenge_id=challenge_id, holder=holder,
                               envelope_id=envelope.id, ttl_minutes=policy.otp_ttl_minutes)
    record(session, clock, actor=actor, action="delivery.pin_reset.requested",
           object_type="pin_reset", object_id=challenge_id,
           summary={"holder_id": holder.id, "request_id": credential.id,
                    "expires_at": challenge.expires_at.isoformat()})
    return ResetChallengeInfo(challenge_id, challenge.expires_at, holder.mobile[-4:])


def _verify(challenge: PinResetChallenge, code: str) -> bool:
    try:
        return _HASHER.verify(challenge.code_hash, _material(challenge.id, code))
    except (VerificationError, InvalidHashError):
        return False


def confirm_pin_reset(sessions: sessionmaker[Session], clock: Clock, tokens: hsm.TokenLibrary,
                      sealer: Sealer, *, challenge_id: str, cin: str, code: str, so_pin: str,
                      actor: str, policy: DeliveryPolicy) -> ResetOutcome:
    """Check the code; reset the token's PIN; send the new PIN by SMS and a notice by
    email. Raises ResetChallengeInvalid (``attempts_left``) or ResetChallengeClosed.

    The challenge is looked up by its id *and* its holder (the one ``cin`` names, which the
    API has checked is the caller): another holder's challenge id is
    ResetChallengeNotFound, like an unknown one, and uses up none of its attempts."""
    try:
        cin = normalise_cin(cin, InvalidHolder)
    except InvalidHolder:
        cin = ""
    # 1. Check and consume the challenge, committing a wrong guess before raising.
    failure: Exception | None = None
    label: str | None = None
    request_id = holder_id = 0
    with transaction(sessions) as session:
        owner = session.scalar(select(Holder.id).where(Holder.cin == cin)) if cin else None
        challenge = None if owner is None else session.scalar(
            select(PinResetChallenge)
            .where(PinResetChallenge.id == str(challenge_id)[:64],
                   PinResetChallenge.holder_id == owner)
            .with_for_update())
        if challenge is None:
            raise ResetChallengeNotFound("no such PIN reset for this holder: ask for a new "
                                         "code")
        now = clock.now()
        if challenge.status != RESET_OPEN or as_utc(challenge.expires_at) <= now:
            raise ResetChallengeClosed("this code expired or was already used: ask for a new "
                                       "one", challenge_id=challenge_id)
        holder = get_holder(session, challenge.holder_id)
        code_ok = _verify(challenge, str(code).strip())
        if code_ok:
            challenge.status = RESET_USED
            challenge.closed_at = now
            request = get_request(session, challenge.request_id)
            label = request.token_label
            request_id, holder_id = request.id, holder.id
            record(session, clock, actor=actor, action="delivery.pin_reset.verified",
                   object_type="pin_reset", object_id=challenge_id,
                   summary={"holder_id": holder.id, "request_id": request.id})
        else:
            challenge.attempts += 1
            left = challenge.max_attempts - challenge.attempts
            if left <= 0:
                challenge.status = RESET_FAILED
                challenge.closed_at = now
            record(session, clock, actor=actor, action="delivery.pin_reset.wrong_code",
                   object_type="pin_reset", object_id=challenge_id,
                   summary={"holder_id": holder.id, "attempts_left": max(left, 0)})
            failure = (ResetChallengeInvalid("wrong code", attempts_left=left)
                       if left > 0 else
                       ResetChallengeClosed("too many wrong codes: ask for a new one",
                                            challenge_id=challenge_id))
    if failure is not None:
        raise failure
    if label is None:
        raise IllegalTransition("the credential has no token", request_id=request_id)
    # 2. The security officer resets the PIN on the token (outside any transaction).
    try:
        new_pin = tokens.reset_pin(label, so_pin, length=policy.pin_length)
    except hsm.HsmError as exc:
        raise TokenLayerUnavailable("the token layer could not reset the PIN",
                                    reason=exc.type) from exc
    # 3. Seal it, queue the SMS and the notice, require a change before signing.
    with transaction(sessions) as session:
        holder = get_holder(session, holder_id)
        envelope = envelopes.seal(session, clock, sealer, purpose=ENVELOPE_RESET_PIN,
                                  holder_id=holder.id, secret=new_pin)
        del new_pin
        request = get_request(session, request_id, lock=True)
        request.pin_change_required = True
        request.updated_at = clock.now()
        notices.enqueue_reset_pin(session, clock, challenge_id=challenge_id, holder=holder,
                                  request_id=request.id, envelope_id=envelope.id,
                                  at=clock.now())
        record(session, clock, actor=actor, action="delivery.pin_reset.done",
               object_type="certificate_request", object_id=request.id,
               summary={"holder_id": holder.id, "challenge": challenge_id})
        return ResetOutcome(request.id, holder.mobile[-4:])

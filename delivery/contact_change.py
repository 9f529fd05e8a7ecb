"""A holder's mobile or email changes only once the holder confirms it.

The mobile receives PINs and signing codes: whoever changes it could redirect the holder's
second factor. So a change (by the province's contact or an operator) does not take effect
at once:

1. :func:`request_change` keeps the new value in a :class:`~delivery.models.ContactChange`
   with an argon2id hash of a one-time code (bound to the change id), sends the code to the
   NEW phone or address (sealed until sent, like every secret), and tells the OLD phone and
   the OLD email address, in French and Arabic, that a change was asked, when, by whom, and
   to what (masked). A second change of the same channel supersedes the first.
2. Until the holder confirms, PINs and codes keep going to the old, confirmed value (the
   holder's ``mobile`` and ``email`` do not move); nothing is held back.
3. :func:`confirm_change` (the holder, with the code) moves the value. A wrong code is
   committed before the error; after ``max_attempts`` or past ``expires_at`` the change is
   closed (ask the contact for a new one). Every step is audited with its actor.
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
from delivery.errors import (
    ContactChangeClosed,
    ContactChangeInvalid,
    ContactChangeNotFound,
    HolderNotFound,
)
from delivery.models import (
    CHANGE_CONFIRMED,
    CHANGE_FAILED,
    CHANGE_PENDING,
    CHANGE_SUPERSEDED,
    ENVELOPE_CONTACT_CODE,
    ContactChange,
    Holder,
)

CODE_DIGITS = 6
_HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
#: The holder's column each channel changes.
FIELDS = {"sms": "mobile", "email": "email"}


@dataclass(frozen=True)
class PendingChange:
    """What the API may show: never the code, the new value only masked."""

    change_id: str
    channel: str
    new_hint: str
    expires_at: datetime
    requested_by: str


def hint(channel: str, value: str) -> str:
    """``••••1234`` for a phone, ``k•••@example.ma`` for an address."""
    if channel == "sms":
        return "••••" + value[-4:]
    local, _, domain = value.partition("@")
    return f"{local[:1]}•••@{domain}"


def _material(change_id: str, code: str) -> str:
    return f"{change_id}:{code}"


def _pending(change: ContactChange) -> PendingChange:
    return PendingChange(change.id, change.channel, hint(change.channel, change.new_value),
                         change.expires_at, change.requested_by)


def request_change(session: Session, clock: Clock, sealer: Sealer, holder: Holder, *,
                   channel: str, new_value: str, actor: str, ttl_hours: int,
                   max_attempts: int) -> PendingChange | None:
    """Ask the holder to confirm ``new_value`` (already normalised) for ``channel``. Returns
    None when it is already the holder's value (nothing to confirm)."""
    field_name = FIELDS[channel]
    old_value = getattr(holder, field_name)
    now = clock.now()
    session.execute(update(ContactChange)
                    .where(ContactChange.holder_id == holder.id,
                           ContactChange.channel == channel,
                           ContactChange.status == CHANGE_PENDING)
                    .values(status=CHANGE_SUPERSEDED, closed_at=now)
                    .execution_options(synchronize_session=False))
    if new_value == old_value:
        return None
    change_id = str(uuid.uuid4())
    code = "".join(secrets.choice("0123456789") for _ in range(CODE_DIGITS))
    envelope = envelopes.seal(session, clock, sealer, purpose=ENVELOPE_CONTACT_CODE,
                              holder_id=holder.id, secret=code)
    change = ContactChange(
        id=change_id, holder_id=holder.id, channel=channel, old_value=old_value,
        new_value=new_value, code_hash=_HASHER.hash(_material(change_id, code)),
        status=CHANGE_PENDING, attempts=0, max_attempts=max_attempts, requested_by=actor,
        created_at=now, expires_at=now + timedelta(hours=ttl_hours))
    del code
    session.add(change)
    session.flush()
    notices.enqueue_contact_changed(session, clock, holder=holder, change_id=change_id,
                                    channel=channel, new_hint=hint(channel, new_value),
                                    by=actor, at=now)
    notices.enqueue_contact_code(session, clock, holder=holder, change_id=change_id,
                                 channel=channel, recipient=new_value,
                                 envelope_id=envelope.id, ttl_hours=ttl_hours)
    record(session, clock, actor=actor, action="delivery.holder.contact_change_requested",
           object_type="holder", object_id=holder.id,
           summary={"change": change_id, "channel": channel,
                    "expires_at": change.expires_at.isoformat()})
    return _pending(change)


def pending_changes(session: Session, clock: Clock, holder_id: int) -> list[PendingChange]:
    now = clock.now()
    found = session.scalars(select(ContactChange).where(
        ContactChange.holder_id == holder_id, ContactChange.status == CHANGE_PENDING)
        .order_by(ContactChange.created_at))
    return [_pending(c) for c in found if as_utc(c.expires_at) > now]


def _verify(change: ContactChange, code: str) -> bool:
    try:
        return _HASHER.verify(change.code_hash, _material(change.id, code))
    except (VerificationError, InvalidHashError):
        return False


def confirm_change(sessions: sessionmaker[Session], clock: Clock, *, holder_id: int,
                   channel: str, code: str, actor: str) -> Holder:
    """The holder confirms the pending change of ``channel`` with the code sent to the new
    value. Raises ContactChangeNotFound, ContactChangeInvalid (``attempts_left``, the wrong
    guess committed) or ContactChangeClosed."""
    failure: Exception | None = None
    with transaction(sessions) as session:
        change = session.scalar(select(ContactChange).where(
            ContactChange.holder_id == holder_id, ContactChange.channel == channel,
            ContactChange.status == CHANGE_PENDING).with_for_update())
        if change is None:
            raise ContactChangeNotFound("no change of this contact detail waits for "
                                        "confirmation", channel=channel)
        now = clock.now()
        if as_utc(change.expires_at) <= now:
            change.status, change.closed_at = CHANGE_FAILED, now
            failure = ContactChangeClosed("this code expired: ask for the change again",
                                          channel=channel)
        elif _verify(change, str(code).strip()):
            holder = session.get(Holder, holder_id)
            if holder is None:
                raise HolderNotFound(f"no holder {holder_id}", holder_id=holder_id)
            change.status, change.closed_at = CHANGE_CONFIRMED, now
            setattr(holder, FIELDS[channel], change.new_value)
            holder.updated_at = now
            record(session, clock, actor=actor, action="delivery.holder.contact_confirmed",
                   object_type="holder", object_id=holder.id,
                   summary={"change": change.id, "channel": channel,
                            "requested_by": change.requested_by})
            session.flush()
            session.expunge(holder)
            return holder
        else:
            change.attempts += 1
            left = change.max_attempts - change.attempts
            if left <= 0:
                change.status, change.closed_at = CHANGE_FAILED, now
            record(session, clock, actor=actor, action="delivery.holder.contact_wrong_code",
                   object_type="holder", object_id=holder_id,
                   summary={"change": change.id, "attempts_left": max(left, 0)})
            failure = (ContactChangeInvalid("wrong code", attempts_left=left) if left > 0
                       else ContactChangeClosed("too many wrong codes: ask for the change "
                                                "again", channel=channel))
    if failure is None:  # unreachable: every branch above returns or sets a failure
        raise ContactChangeClosed("not confirmed", channel=channel)
    raise failure

"""Forgotten or locked PIN: a one-time code to the holder's mobile, then the SO reset."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.orm import Session

from api.delivery_common import CIN
from api.policy import Scope
from api.routing import Call, Routes
from api.schema import rule
from api.wiring.flaskapp import wiring
from delivery import (
    holders,
    reset,
)
from delivery.models import Holder

routes = Routes()


@dataclass(frozen=True)
class PinResetIn:
    cin: str = field(metadata=rule(pattern=CIN))


@dataclass(frozen=True)
class PinResetOut:
    """A code went by SMS; the code itself is never returned."""

    challenge_id: str
    expires_at: datetime
    phone_hint: str


@dataclass(frozen=True)
class PinResetConfirmIn:
    cin: str = field(metadata=rule(pattern=CIN))
    code: str = field(metadata=rule(pattern=r"^[0-9]{4,10}$", write_only=True))


@dataclass(frozen=True)
class PinResetDoneOut:
    """The new PIN went by SMS; it must be changed before the next signature."""

    request_id: int
    phone_hint: str


def _own_holder_by_cin(call: Call, session: Session, cin: str) -> Holder:
    found = holders.find_by_cin(session, cin)
    # An unknown CIN and another holder's CIN get the same answer.
    call.authorize(Scope(holder_id=found.id if found is not None else -1))
    if found is None:  # unreachable for a holder (their own CIN exists)
        from delivery.errors import HolderNotFound

        raise HolderNotFound("no holder with this CIN", field="cin")
    return found


@routes.operation("POST", "/pin-reset", action="holder.pin", body=PinResetIn,
                  response=PinResetOut, status=201, rate_limit="otp", errors=(409,),
                  rate_subject=lambda args: f"cin:{args['body'].cin.upper()}",
                  summary="Forgotten or locked PIN: send a one-time code to my mobile")
def request_reset(call: Call, body: PinResetIn) -> PinResetOut:
    _own_holder_by_cin(call, call.session, body.cin)
    root = wiring()
    info = reset.request_pin_reset(call.session, call.clock, root.sealer(), cin=body.cin,
                                   actor=call.actor, policy=root.policy)
    return PinResetOut(info.challenge_id, info.expires_at, info.phone_hint)


@routes.operation("POST", "/pin-reset/<challenge_id>/confirm", action="holder.pin",
                  body=PinResetConfirmIn, response=PinResetDoneOut, rate_limit="otp",
                  rate_subject=lambda args: f"cin:{args['body'].cin.upper()}",
                  transactional=False, errors=(409, 503),
                  summary="Confirm a PIN reset with the one-time code: a new PIN goes by SMS")
def confirm_reset(call: Call, challenge_id: str, body: PinResetConfirmIn) -> PinResetDoneOut:
    with call.runtime.unit_of_work() as session:
        _own_holder_by_cin(call, session, body.cin)
    root = wiring()
    outcome = reset.confirm_pin_reset(
        call.runtime.sessions, call.clock, root.tokens(), root.sealer(),
        challenge_id=challenge_id, cin=body.cin, code=body.code,
        so_pin=call.settings.so_pin, actor=call.actor, policy=root.policy)
    return PinResetDoneOut(outcome.request_id, outcome.phone_hint)

"""The notification outbox: what waits, what died, and giving it new attempts."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from api.delivery_common import OutboxStatus
from api.routing import Call, Routes
from api.schema import PageQuery, make_page, page_of, rule
from core.errors import InvalidInput
from delivery import (
    outbox,
)
from delivery.models import OutboxMessage

routes = Routes()


@dataclass(frozen=True)
class OutboxOut:
    """A notification; it never carries a PIN or a code (those are sealed envelopes)."""

    id: int
    channel: Literal["sms", "email"]
    recipient: str
    template: str
    status: OutboxStatus
    attempts: int
    next_attempt_at: datetime
    last_error: str
    holder_id: int | None
    request_id: int | None
    created_at: datetime
    sent_at: datetime | None
    #: An earlier attempt may have been accepted (timeout, crashed worker): the provider is
    #: asked before any new SMS attempt.
    outcome_unknown: bool


@dataclass(frozen=True)
class OutboxQuery(PageQuery):
    status: OutboxStatus | None = None
    holder_id: int | None = field(default=None, metadata=rule(minimum=1,
                                                              maximum=2_147_483_647))


@dataclass(frozen=True)
class PurposeStatsOut:
    purpose: str
    pending: int
    dead: int
    oldest_pending_at: datetime | None


@dataclass(frozen=True)
class OutboxStatsOut:
    pending: int
    sending: int
    sent: int
    dead: int
    oldest_pending_at: datetime | None
    by_purpose: list[PurposeStatsOut]
    #: A message waits longer than TAWQI_OUTBOX_ALERT_AGE_MINUTES, or some are dead.
    alert: bool
    oldest_pending_minutes: float


@dataclass(frozen=True)
class RetryDeadIn:
    #: Only the dead messages of this template (e.g. ``pin.initial``); all when absent.
    purpose: str | None = field(default=None, metadata=rule(pattern=r"^[a-z._]{1,50}$"))


@dataclass(frozen=True)
class RetryDeadOut:
    retried: list[int]


def outbox_out(m: OutboxMessage) -> OutboxOut:
    return OutboxOut(m.id, m.channel, m.recipient, m.template,  # type: ignore[arg-type]
                     m.status, m.attempts, m.next_attempt_at,  # type: ignore[arg-type]
                     m.last_error, m.holder_id, m.request_id, m.created_at, m.sent_at,
                     bool(m.outcome_unknown))


@routes.operation("GET", "/outbox", action="outbox.read", query=OutboxQuery,
                  response=page_of(OutboxOut), summary="Notifications, newest first")
def list_outbox(call: Call, query: OutboxQuery) -> object:
    found = outbox.list_messages(call.session, status=query.status, holder_id=query.holder_id,
                                 limit=query.limit, offset=query.offset)
    return make_page(OutboxOut, [outbox_out(m) for m in found.items], found.total,
                     query.limit, query.offset)


@routes.operation("GET", "/outbox/stats", action="outbox.read", response=OutboxStatsOut,
                  summary="Outbox depth by status")
def outbox_stats(call: Call) -> OutboxStatsOut:
    s = outbox.stats(call.session)
    alarm = outbox.alert(call.session, call.clock,
                         threshold_minutes=call.settings.outbox_alert_age_minutes)
    return OutboxStatsOut(s.pending, s.sending, s.sent, s.dead, s.oldest_pending_at,
                          [PurposeStatsOut(f.purpose, f.pending, f.dead, f.oldest_pending_at)
                           for f in outbox.stats_by_purpose(call.session)],
                          alarm.raised, round(alarm.oldest_pending_minutes, 1))


@routes.operation("POST", "/outbox/retry-dead", action="outbox.manage", body=RetryDeadIn,
                  response=RetryDeadOut,
                  summary="Give every dead notification (of one purpose) new attempts")
def retry_all_dead(call: Call, body: RetryDeadIn) -> RetryDeadOut:
    try:
        ids = outbox.retry_all_dead(call.session, call.clock, actor=call.actor,
                                    purpose=body.purpose)
    except ValueError as exc:
        raise InvalidInput(str(exc), field="purpose") from exc
    return RetryDeadOut(ids)


@routes.operation("POST", "/outbox/<id:message_id>/retry", action="outbox.manage",
                  response=OutboxOut, summary="Give a dead notification new attempts")
def retry_message(call: Call, message_id: int) -> OutboxOut:
    return outbox_out(outbox.retry_dead(call.session, call.clock, message_id,
                                        actor=call.actor))

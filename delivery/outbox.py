"""The transactional outbox: notifications written with the change that causes them, sent by
workers with retries.

``enqueue`` adds a row in the caller's transaction, so a notification exists if and only if
its change committed. Rows never hold a secret: a PIN or a code travels as a reference to a
:class:`~delivery.models.SecretEnvelope`, opened by the worker at the moment of sending.

:class:`OutboxWorker` works in three short transactions per batch, never holding a database
transaction while talking to a provider:

1. claim due rows (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so several workers share the work
   without waiting for each other; SQLite serialises writers) and mark them ``sending`` with a
   lease;
2. for each row, open its envelope if any and call the backend;
3. record the outcome, conditional on still holding the claim: ``sent`` (and, once every
   message carrying an envelope is sent, destroy the envelope), or back to ``pending`` with
   exponential backoff, or ``dead`` after a permanent error or too many attempts.

Exactly once, from the holder's point of view: a provider outage raises before the provider
accepted the message, so the row is retried and sent once. Two failures leave the outcome
unknown: no answer from the provider (``AmbiguousSendError``), or a crash between the
provider's acceptance and step 3 (the row stays claimed until its lease lapses). Such a row is
marked ``outcome_unknown``; before sending it again as an SMS the worker asks the provider
(``SmsBackend.find_sent``, matching the exact body) and records it sent if found. Email has no
such lookup: there the window remains, and the re-sent copy keeps its ``Message-ID``. The
lease (``TAWQI_OUTBOX_LEASE_SECONDS``) must exceed a provider call's timeout.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, sessionmaker

from core.audit import record
from core.clock import Clock
from core.db import is_postgres, transaction
from core.listing import Page, scalars_page
from delivery import envelopes
from delivery.backends import (
    AmbiguousSendError,
    EmailBackend,
    OutgoingEmail,
    OutgoingSms,
    PermanentSendError,
    SmsBackend,
    TransientSendError,
)
from delivery.envelopes import Sealer
from delivery.errors import EnvelopeUnavailable, OutboxMessageNotFound, TokenLayerUnavailable
from delivery.messages import TEMPLATES, render
from delivery.models import (
    CHANNELS,
    ENVELOPE_INITIAL_PIN,
    OUTBOX_DEAD,
    OUTBOX_PENDING,
    OUTBOX_SENDING,
    OUTBOX_SENT,
    CertificateRequest,
    OutboxMessage,
    SecretEnvelope,
)
from delivery.policy import RetryPolicy

log = logging.getLogger("tawqi.delivery.outbox")

WORKER_ACTOR = "outbox-worker"
_SECRET_WORDS = ("pin", "otp", "code", "secret", "password", "token_value")


@dataclass(frozen=True)
class Notification:
    """One message to send, validated on construction.

    ``params`` fill the template and are stored in clear: they may not look like secrets.
    ``envelope_id`` is required exactly when the template carries a secret.
    """

    channel: str
    recipient: str
    template: str
    dedupe_key: str
    params: Mapping[str, Any] = field(default_factory=dict)
    envelope_id: str | None = None
    holder_id: int | None = None
    request_id: int | None = None

    def __post_init__(self) -> None:
        if self.channel not in CHANNELS:
            raise ValueError(f"unknown channel {self.channel!r}")
        template = TEMPLATES.get(self.template)
        if template is None:
            raise ValueError(f"unknown template {self.template!r}")
        if (template.sms if self.channel == "sms" else template.email_body) is None:
            raise ValueError(f"template {self.template} has no {self.channel} text")
        if template.needs_secret != (self.envelope_id is not None):
            raise ValueError(f"template {self.template} "
                             f"{'needs' if template.needs_secret else 'takes no'} envelope")
        missing = template.fields() - set(self.params)
        if missing:
            raise ValueError(f"template {self.template} misses {sorted(missing)}")
        for key in self.params:
            lowered = key.lower()
            if any(lowered == word or lowered.endswith("_" + word) for word in _SECRET_WORDS):
                raise ValueError(f"outbox parameters never carry secrets (key {key!r})")
        if not self.recipient or not self.dedupe_key:
            raise ValueError("a notification needs a recipient and a dedupe key")
        json.dumps(dict(self.params))  # must be storable as JSON
        object.__setattr__(self, "params", MappingProxyType(dict(self.params)))


def enqueue(session: Session, clock: Clock, notification: Notification) -> OutboxMessage:
    """Add the notification in the caller's transaction. Idempotent on ``dedupe_key``: the
    same key enqueued twice (a retried request, two racing callers) yields one message."""
    now = clock.now()
    insert = pg_insert if is_postgres(session) else sqlite_insert
    session.execute(insert(OutboxMessage).values(
        dedupe_key=notification.dedupe_key, channel=notification.channel,
        recipient=notification.recipient, template=notification.template,
        params=json.dumps(dict(notification.params), ensure_ascii=False, sort_keys=True),
        envelope_id=notification.envelope_id, holder_id=notification.holder_id,
        request_id=notification.request_id, status=OUTBOX_PENDING, attempts=0,
        next_attempt_at=now, last_error="", created_at=now,
    ).on_conflict_do_nothing(index_elements=["dedupe_key"]))
    return session.scalars(select(OutboxMessage).where(
        OutboxMessage.dedupe_key == notification.dedupe_key)).one()


@dataclass
class WorkerReport:
    claimed: int = 0
    sent: int = 0
    retried: int = 0
    dead: int = 0
    lost_claims: int = 0
    #: Of ``sent``: found already accepted by the provider, so not sent again.
    found_sent: int = 0

    def add(self, other: WorkerReport) -> None:
        for name in ("claimed", "sent", "retried", "dead", "lost_claims", "found_sent"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass(frozen=True)
class _Claimed:
    id: int
    channel: str
    recipient: str
    template: str
    params: dict[str, Any]
    attempts: int
    envelope_id: str | None
    envelope_purpose: str | None
    envelope_holder_id: int | None
    envelope_blob: bytes | None = field(repr=False)
    created_at: datetime
    first_attempt_at: datetime
    outcome_unknown: bool


class OutboxWorker:
    """Sends due outbox messages. Safe to run in several processes at once."""

    def __init__(self, sessions: sessionmaker[Session], clock: Clock, *, sms: SmsBackend,
                 email: EmailBackend, sealer: Sealer | None, retry: RetryPolicy | None = None,
                 worker_id: str | None = None, batch_size: int = 20) -> None:
        self.sessions = sessions
        self.clock = clock
        self.sms = sms
        self.email = email
        self.sealer = sealer
        self.retry = retry or RetryPolicy()
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:" \
                                      f"{uuid.uuid4().hex[:6]}"
        self.batch_size = batch_size

    # -- 1. claim

    def _claim(self) -> list[_Claimed]:
        with transaction(self.sessions) as session:
            now = self.clock.now()
            due = or_(
                and_(OutboxMessage.status == OUTBOX_PENDING,
                     OutboxMessage.next_attempt_at <= now),
                and_(OutboxMessage.status == OUTBOX_SENDING,
                     OutboxMessage.claimed_until < now),
            )
            query = (select(OutboxMessage).where(due)
                     .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id)
                     .limit(self.batch_size))
            if self.sealer is None:  # leave secrets to a worker that can open them
                query = query.where(OutboxMessage.envelope_id.is_(None))
            if is_postgres(session):
                query = query.with_for_update(skip_locked=True, of=OutboxMessage)
            rows = list(session.scalars(query))
            if not rows:
                return []
            ids = [r.id for r in rows]
            # A row still "sending" had its worker die holding the claim, maybe after the
            # provider accepted it: its outcome is unknown.
            lapsed = {r.id for r in rows if r.status == OUTBOX_SENDING}
            firsts = {r.id: r.first_attempt_at or now for r in rows}
            unknown = {r.id: bool(r.outcome_unknown) or r.id in lapsed for r in rows}
            session.execute(
                update(OutboxMessage).where(OutboxMessage.id.in_(ids))
                .values(status=OUTBOX_SENDING, claimed_by=self.worker_id,
                        claimed_until=now + self.retry.lease,
                        attempts=OutboxMessage.attempts + 1,
                        first_attempt_at=func.coalesce(OutboxMessage.first_attempt_at, now))
                .execution_options(synchronize_session=False))
            if lapsed:
                session.execute(
                    update(OutboxMessage).where(OutboxMessage.id.in_(lapsed))
                    .values(outcome_unknown=True)
                    .execution_options(synchronize_session=False))
            envelope_ids = {r.envelope_id for r in rows if r.envelope_id}
            found = {e.id: e for e in session.scalars(
                select(SecretEnvelope).where(SecretEnvelope.id.in_(envelope_ids)))}
            claimed = []
            for row in rows:
                env = found.get(row.envelope_id) if row.envelope_id else None
                claimed.append(_Claimed(
                    row.id, row.channel, row.recipient, row.template, json.loads(row.params),
                    row.attempts + 1, row.envelope_id, env.purpose if env else None,
                    env.holder_id if env else None, env.ciphertext if env else None,
                    row.created_at, firsts[row.id], unknown[row.id]))
            return claimed

    # -- 2. send

    def _send(self, item: _Claimed) -> tuple[str, bool]:
        """Send the message; return the provider's reference and whether it was found
        already accepted (an earlier attempt whose outcome was unknown)."""
        secret: str | None = None
        if item.envelope_id is not None:
            if self.sealer is None:  # not claimed by such a worker; defensive
                raise TransientSendError("no sealer configured to open secret envelopes")
            if item.envelope_purpose is None or item.envelope_holder_id is None:
                raise PermanentSendError("the message's secret envelope is missing")
            try:
                secret = envelopes.open_envelope(self.sealer, item.envelope_id,
                                                 item.envelope_purpose,
                                                 item.envelope_holder_id, item.envelope_blob)
            except EnvelopeUnavailable as exc:
                # Never send a secret twice: its envelope is gone once it was sent.
                raise PermanentSendError("secret already delivered; envelope destroyed") \
                    from exc
            except TokenLayerUnavailable as exc:
                raise TransientSendError(f"token layer: {exc.extras.get('reason')}") from exc
        rendered = render(item.template, item.channel, item.params, secret)
        reference = f"tawqi-outbox-{item.id}"
        if item.channel == "sms":
            if item.outcome_unknown:
                # Did an earlier attempt go through? Compare the bodies the provider accepted
                # for this number with the one we would send (nothing stored to match on).
                found = self.sms.find_sent(item.recipient, rendered.body,
                                           item.first_attempt_at)
                if found is not None:
                    return found, True
            return self.sms.send(OutgoingSms(item.recipient, rendered.body, reference,
                                             secret)), False
        # SMTP has no lookup: a re-sent email keeps its Message-ID (see the module's note).
        return self.email.send(OutgoingEmail(item.recipient, rendered.subject, rendered.body,
                                             reference, secret)), False

    # -- 3. record

    def _record_sent(self, item: _Claimed, provider_ref: str) -> bool:
        with transaction(self.sessions) as session:
            now = self.clock.now()
            done = session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id == item.id, OutboxMessage.status == OUTBOX_SENDING,
                       OutboxMessage.claimed_by == self.worker_id)
                .values(status=OUTBOX_SENT, sent_at=now, provider_ref=provider_ref[:200],
                        claimed_until=None, last_error="")
                .execution_options(synchronize_session=False))
            if done.rowcount != 1:  # type: ignore[attr-defined]
                return False
            if item.envelope_id is not None:
                self._after_secret_sent(session, item, now)
            return True

    def _after_secret_sent(self, session: Session, item: _Claimed, now: datetime) -> None:
        # Lock the envelope first: of two workers finishing the SMS and the email of one
        # envelope at once, the second sees the first's row sent and destroys it.
        envelope = session.scalar(select(SecretEnvelope)
                                  .where(SecretEnvelope.id == item.envelope_id)
                                  .with_for_update())
        if envelope is None:
            return
        unsent = session.scalar(select(func.count(OutboxMessage.id)).where(
            OutboxMessage.envelope_id == item.envelope_id,
            OutboxMessage.status != OUTBOX_SENT))
        if item.envelope_purpose == ENVELOPE_INITIAL_PIN:
            request = session.scalar(select(CertificateRequest).where(
                CertificateRequest.pin_envelope_id == item.envelope_id))
            if request is not None and request.pin_sent_at is None:
                request.pin_sent_at = now
        record(session, self.clock, actor=WORKER_ACTOR, action="delivery.secret.sent",
               object_type="outbox", object_id=item.id,
               summary={"channel": item.channel, "purpose": item.envelope_purpose,
                        "envelope": item.envelope_id, "holder_id": item.envelope_holder_id})
        if not unsent:
            envelopes.destroy(session, self.clock, envelope.id, reason="sent",
                              actor=WORKER_ACTOR)

    def _gives_up(self, item: _Claimed, now: datetime) -> bool:
        """Out of attempts? A message carrying a PIN or a code keeps trying (backoff capped)
        for ``secret_retry`` after it was queued, however many attempts that takes; other
        notices stop after ``max_attempts``. (An operator's retry of a secret message past
        that period gives it ``max_attempts`` more.)"""
        out_of_attempts = item.attempts >= self.retry.max_attempts
        if item.envelope_id is not None:
            return out_of_attempts and \
                now - _aware(item.created_at, now) >= self.retry.secret_retry
        return out_of_attempts

    def _record_failure(self, item: _Claimed, error: str, permanent: bool,
                        ambiguous: bool = False) -> str:
        with transaction(self.sessions) as session:
            now = self.clock.now()
            dead = permanent or self._gives_up(item, now)
            values: dict[str, Any] = {"last_error": error[:500], "claimed_until": None}
            if ambiguous:
                values["outcome_unknown"] = True
            if dead:
                values["status"] = OUTBOX_DEAD
            else:
                values["status"] = OUTBOX_PENDING
                values["next_attempt_at"] = now + self.retry.delay(item.attempts)
            done = session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id == item.id, OutboxMessage.status == OUTBOX_SENDING,
                       OutboxMessage.claimed_by == self.worker_id)
                .values(**values).execution_options(synchronize_session=False))
            if done.rowcount != 1:  # type: ignore[attr-defined]
                return "lost"
            if dead:
                record(session, self.clock, actor=WORKER_ACTOR, action="delivery.outbox.dead",
                       object_type="outbox", object_id=item.id,
                       summary={"channel": item.channel, "template": item.template,
                                "attempts": item.attempts, "error": error[:200]})
            return "dead" if dead else "retry"

    # -- the loop

    def run_once(self) -> WorkerReport:
        """Claim one batch of due messages and try each once."""
        report = WorkerReport()
        for item in self._claim():
            report.claimed += 1
            secret_free_error = ""
            found = False
            try:
                provider_ref, found = self._send(item)
            except TransientSendError as exc:
                secret_free_error = str(exc)
                outcome = self._record_failure(item, secret_free_error, permanent=False,
                                               ambiguous=isinstance(exc, AmbiguousSendError))
            except PermanentSendError as exc:
                secret_free_error = str(exc)
                outcome = self._record_failure(item, secret_free_error, permanent=True)
            else:
                outcome = "sent" if self._record_sent(item, provider_ref) else "lost"
            if outcome == "sent" and found:
                report.found_sent += 1
                log.info("outbox %s: already accepted by the provider (%s); not sent again",
                         item.id, provider_ref)
            if outcome == "sent":
                report.sent += 1
                log.info("outbox %s: %s %s sent", item.id, item.channel, item.template)
            elif outcome == "retry":
                report.retried += 1
                log.warning("outbox %s: %s %s failed (attempt %s), will retry: %s", item.id,
                            item.channel, item.template, item.attempts, secret_free_error)
            elif outcome == "dead":
                report.dead += 1
                log.error("outbox %s: %s %s given up after %s attempt(s): %s", item.id,
                          item.channel, item.template, item.attempts, secret_free_error)
            else:
                report.lost_claims += 1
                log.warning("outbox %s: the claim lapsed before the outcome was recorded",
                            item.id)
        return report

    def drain(self, max_rounds: int = 1000) -> WorkerReport:
        """Run until no message is due now (failed ones wait for their backoff)."""
        total = WorkerReport()
        for _ in range(max_rounds):
            report = self.run_once()
            total.add(report)
            if report.claimed == 0:
                break
        return total

    def run_forever(self, stop: threading.Event, idle_seconds: float = 2.0) -> WorkerReport:
        """Drain, then sleep ``idle_seconds`` between polls, until ``stop`` is set."""
        total = WorkerReport()
        while not stop.is_set():
            try:
                report = self.drain()
            except Exception:  # the database may be away: keep the worker alive
                log.exception("outbox worker round failed; retrying")
                report = WorkerReport()
            total.add(report)
            if report.claimed == 0:
                stop.wait(idle_seconds)
        return total


def _aware(at: datetime, like: datetime) -> datetime:
    """``at`` comparable with ``like`` (SQLite returns naive UTC datetimes)."""
    if at.tzinfo is None and like.tzinfo is not None:
        return at.replace(tzinfo=like.tzinfo)
    return at


def retry_dead(session: Session, clock: Clock, message_id: int, *, actor: str) -> OutboxMessage:
    """Give a dead message a new series of attempts (after fixing a phone number, an outage
    longer than the retries, a configuration error)."""
    message = session.get(OutboxMessage, message_id)
    if message is None:
        raise OutboxMessageNotFound(f"no outbox message {message_id}", message_id=message_id)
    if message.status != OUTBOX_DEAD:
        return message
    message.status = OUTBOX_PENDING
    message.attempts = 0
    message.next_attempt_at = clock.now()
    session.flush()
    record(session, clock, actor=actor, action="delivery.outbox.retried", object_type="outbox",
           object_id=message.id, summary={"channel": message.channel,
                                          "template": message.template})
    return message


def retry_all_dead(session: Session, clock: Clock, *, actor: str,
                   purpose: str | None = None) -> list[int]:
    """Give every dead message (of template ``purpose`` if given) a new series of attempts,
    e.g. after an outage longer than the retries. Returns their ids; each is audited."""
    if purpose is not None and purpose not in TEMPLATES:
        raise ValueError(f"unknown purpose {purpose!r}")
    query = select(OutboxMessage).where(OutboxMessage.status == OUTBOX_DEAD) \
        .order_by(OutboxMessage.id)
    if purpose is not None:
        query = query.where(OutboxMessage.template == purpose)
    if is_postgres(session):
        query = query.with_for_update(skip_locked=True)
    ids = []
    for message in session.scalars(query):
        retry_dead(session, clock, message.id, actor=actor)
        ids.append(message.id)
    return ids


@dataclass(frozen=True)
class PurposeFigures:
    """Pending and dead messages of one purpose (template), and the oldest pending one."""

    purpose: str
    pending: int
    dead: int
    oldest_pending_at: datetime | None


def stats_by_purpose(session: Session) -> list[PurposeFigures]:
    """Per template: messages waiting (pending or being sent), dead, oldest waiting."""
    waiting = (OUTBOX_PENDING, OUTBOX_SENDING)
    rows = session.execute(
        select(OutboxMessage.template, OutboxMessage.status, func.count(OutboxMessage.id),
               func.min(OutboxMessage.created_at))
        .where(OutboxMessage.status.in_((*waiting, OUTBOX_DEAD)))
        .group_by(OutboxMessage.template, OutboxMessage.status)).all()
    figures: dict[str, dict[str, Any]] = {
        name: {"pending": 0, "dead": 0, "oldest": None} for name in TEMPLATES}
    for template, status, count, oldest in rows:
        entry = figures.setdefault(template, {"pending": 0, "dead": 0, "oldest": None})
        if status == OUTBOX_DEAD:
            entry["dead"] += count
        else:
            entry["pending"] += count
            if entry["oldest"] is None or oldest < entry["oldest"]:
                entry["oldest"] = oldest
    return [PurposeFigures(name, f["pending"], f["dead"], f["oldest"])
            for name, f in sorted(figures.items())]


@dataclass(frozen=True)
class OutboxAlert:
    """What the operator page shows and metrics count: waiting too long, or dead."""

    oldest_pending_at: datetime | None
    oldest_pending_minutes: float
    late: bool
    dead: int
    dead_secret: int

    @property
    def raised(self) -> bool:
        return self.late or self.dead > 0


def alert(session: Session, clock: Clock, *, threshold_minutes: int) -> OutboxAlert:
    """Is the outbox in trouble? A message waiting longer than ``threshold_minutes`` (an
    outage, SMTP refusing plaintext, a provider lookup failing), or any dead message."""
    waiting = session.scalar(select(func.min(OutboxMessage.created_at)).where(
        OutboxMessage.status.in_((OUTBOX_PENDING, OUTBOX_SENDING))))
    now = clock.now()
    minutes = (now - _aware(waiting, now)).total_seconds() / 60 if waiting else 0.0
    dead = session.scalar(select(func.count(OutboxMessage.id))
                          .where(OutboxMessage.status == OUTBOX_DEAD)) or 0
    dead_secret = session.scalar(select(func.count(OutboxMessage.id)).where(
        OutboxMessage.status == OUTBOX_DEAD, OutboxMessage.envelope_id.is_not(None))) or 0
    return OutboxAlert(waiting, max(minutes, 0.0), minutes > threshold_minutes, dead,
                       dead_secret)


@dataclass(frozen=True)
class OutboxStats:
    pending: int
    sending: int
    sent: int
    dead: int
    oldest_pending_at: datetime | None


def stats(session: Session) -> OutboxStats:
    counts = dict(session.execute(select(OutboxMessage.status, func.count(OutboxMessage.id))
                                  .group_by(OutboxMessage.status)).all())
    oldest = session.scalar(select(func.min(OutboxMessage.created_at))
                            .where(OutboxMessage.status == OUTBOX_PENDING))
    return OutboxStats(counts.get(OUTBOX_PENDING, 0), counts.get(OUTBOX_SENDING, 0),
                       counts.get(OUTBOX_SENT, 0), counts.get(OUTBOX_DEAD, 0), oldest)


def list_messages(session: Session, *, status: str | None = None, holder_id: int | None = None,
                  limit: int | None = 100, offset: int = 0) -> Page[OutboxMessage]:
    """Messages matching every filter given, newest first."""
    query = select(OutboxMessage).order_by(OutboxMessage.id.desc())
    if status:
        query = query.where(OutboxMessage.status == status)
    if holder_id is not None:
        query = query.where(OutboxMessage.holder_id == holder_id)
    return scalars_page(session, query, limit=limit, offset=offset)



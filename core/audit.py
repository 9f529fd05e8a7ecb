"""The tamper-evident audit log.

Every state change appends one :class:`AuditEvent` in the same transaction as the change.
Events form a hash chain: each stores the SHA-256 of its predecessor (``prev_hash``) and of
itself (``hash``, over a canonical JSON of its fields and ``prev_hash``). A single
``audit_head`` row holds the last sequence number and hash; appending locks it, so writers
queue and the chain never forks. :func:`verify` recomputes the chain and names the first
event that was edited, deleted or inserted.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, Integer, String, Text, insert, select
from sqlalchemy import event as sa_event
from sqlalchemy.orm import Mapped, Session, SessionTransaction, mapped_column

from core.clock import Clock, as_utc
from core.db import Base
from core.listing import LIKE_ESCAPE, Page, escape_like, scalars_page

GENESIS_HASH = "0" * 64


class AuditEvent(Base):
    __tablename__ = "audit_event"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(100), index=True)
    object_type: Mapped[str] = mapped_column(String(50))
    object_id: Mapped[str] = mapped_column(String(100))
    summary: Mapped[str] = mapped_column(Text)  # canonical JSON
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))

    @property
    def summary_dict(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(self.summary)
        return loaded


class AuditHead(Base):
    """One row (id=1): the end of the chain. Locked by every append."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(Integer)
    hash: Mapped[str] = mapped_column(String(64))


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"),
                      default=str)


def event_hash(seq: int, at: datetime, actor: str, action: str, object_type: str,
               object_id: str, summary: str, prev_hash: str) -> str:
    payload = canonical_json({
        "seq": seq, "at": as_utc(at).isoformat(timespec="microseconds"), "actor": actor,
        "action": action, "object_type": object_type, "object_id": object_id,
        "summary": summary, "prev_hash": prev_hash,
    })
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


_SECRET_KEYS = ("pin", "otp", "password", "secret", "sad", "token_value")


def _check_no_secret(summary: dict[str, Any]) -> None:
    for key in summary:
        lowered = key.lower()
        if any(lowered == s or lowered.endswith("_" + s) for s in _SECRET_KEYS):
            raise ValueError(f"audit summaries never carry secrets (key {key!r})")


_HEAD_HELD = "tawqi.audit.head"


def _current_transaction(session: Session) -> SessionTransaction | None:
    return session.get_nested_transaction() or session.get_transaction()


def _held_head(session: Session) -> AuditHead | None:
    """The head this session locked earlier in the transaction still under way (or in one
    of its enclosing transactions), if any: appending again needs no second lock."""
    held = session.info.get(_HEAD_HELD)
    if held is None:
        return None
    head, locked_in = held
    if not locked_in.is_active:
        return None
    if _within(_current_transaction(session), locked_in):
        return head if head in session else None
    return None


def _lock_head(session: Session) -> AuditHead:
    """The chain's head, locked for the transaction under way (once per transaction)."""
    head = _held_head(session)
    if head is not None:
        return head
    # populate_existing: a head this session read before (unlocked) is refreshed from the
    # locked row, so the events chain onto what other transactions committed.
    head = session.execute(
        select(AuditHead).where(AuditHead.id == 1).with_for_update()
        .execution_options(populate_existing=True)
    ).scalar_one_or_none()
    if head is None:
        head = AuditHead(id=1, seq=0, hash=GENESIS_HASH)
        session.add(head)
    locked_in = _current_transaction(session)
    if locked_in is not None:
        session.info[_HEAD_HELD] = (head, locked_in)
    return head


_DEFERRED = "tawqi.audit.deferred"


def record(session: Session, clock: Clock, *, actor: str, action: str, object_type: str,
           object_id: str | int, summary: dict[str, Any] | None = None) -> AuditEvent:
    """Append an event in the caller's transaction. Call it in the same unit of work as
    the change it describes, so both commit or neither does.

    The first event of a transaction locks the chain's head; the next ones of the same
    transaction chain onto it without locking it again (a batch of changes in one
    transaction takes the lock once). Inside :func:`deferred`, the event is kept in memory
    (its ``seq`` and hashes unset) and appended with the others when the block ends."""
    summary = summary or {}
    _check_no_secret(summary)
    at = as_utc(clock.now())
    text = canonical_json(summary)
    pending: list[tuple[SessionTransaction | None, AuditEvent]] | None = \
        session.info.get(_DEFERRED)
    if pending is not None:
        event = AuditEvent(at=at, actor=actor, action=action, object_type=object_type,
                           object_id=str(object_id), summary=text)
        pending.append((_current_transaction(session), event))
        return event
    head = _lock_head(session)
    seq = head.seq + 1
    digest = event_hash(seq, at, actor, action, object_type, str(object_id), text, head.hash)
    event = AuditEvent(seq=seq, at=at, actor=actor, action=action, object_type=object_type,
                       object_id=str(object_id), summary=text, prev_hash=head.hash,
                       hash=digest)
    session.add(event)
    head.seq = seq
    head.hash = digest
    session.flush()
    return event


def _within(tx: SessionTransaction | None, outer: SessionTransaction) -> bool:
    """Whether ``tx`` is ``outer`` or a transaction (savepoint) nested in it."""
    while tx is not None:
        if tx is outer:
            return True
        tx = tx.parent
    return False


@sa_event.listens_for(Session, "after_soft_rollback")
def _drop_rolled_back(session: Session, previous_transaction: SessionTransaction) -> None:
    """Events deferred in a transaction (or savepoint) that rolled back are forgotten with
    the changes they described."""
    pending = session.info.get(_DEFERRED)
    if pending:
        pending[:] = [(tx, e) for tx, e in pending
                      if not _within(tx, previous_transaction)]


@contextmanager
def deferred(session: Session) -> Iterator[None]:
    """Within the block, :func:`record` keeps the events in memory; when the block ends
    without an error they are appended in one go (:func:`append_pending`): the chain's
    head is locked once, at the very end of the work, for one bulk INSERT, so concurrent
    transactions take turns on the head only for that moment instead of from their first
    event to their commit. Events of a savepoint rolled back inside the block are dropped.
    Close the block before the transaction commits (``with transaction(...) as s,
    deferred(s):``). An error leaves nothing pending. Nested blocks join the outer one."""
    if _DEFERRED in session.info:
        yield
        return
    session.info[_DEFERRED] = []
    try:
        yield
        append_pending(session)
    finally:
        session.info.pop(_DEFERRED, None)


def append_pending(session: Session) -> int:
    """Append the events :func:`deferred` kept so far, in their order, under one lock of
    the head and in one INSERT; returns how many."""
    pending: list[tuple[SessionTransaction | None, AuditEvent]] = \
        session.info.get(_DEFERRED) or []
    if not pending:
        return 0
    events = [e for _, e in pending]
    pending.clear()
    session.flush()  # the changes the events describe go first
    head = _lock_head(session)
    seq, prev = head.seq, head.hash
    rows = []
    for event_ in events:
        seq += 1
        event_.seq = seq
        event_.prev_hash = prev
        event_.hash = event_hash(seq, event_.at, event_.actor, event_.action,
                                 event_.object_type, event_.object_id, event_.summary, prev)
        prev = event_.hash
        rows.append({"seq": seq, "at": event_.at, "actor": event_.actor,
                     "action": event_.action, "object_type": event_.object_type,
                     "object_id": event_.object_id, "summary": event_.summary,
                     "prev_hash": event_.prev_hash, "hash": event_.hash})
    session.execute(insert(AuditEvent), rows)
    head.seq = seq
    head.hash = prev
    session.flush()
    return len(rows)


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    checked: int
    first_broken_seq: int | None = None
    reason: str = ""


def verify(session: Session) -> ChainReport:
    """Recompute the whole chain. Returns the first broken event, or ``ok``."""
    expected_prev = GENESIS_HASH
    expected_seq = 1
    checked = 0
    rows = session.execute(select(AuditEvent).order_by(AuditEvent.seq)).scalars()
    for event in rows.yield_per(1000):
        if event.seq != expected_seq:
            reason = (f"sequence jumps from {expected_seq - 1} to {event.seq}: "
                      "an event was deleted" if event.seq > expected_seq
                      else "sequence repeats")
            return ChainReport(False, checked, event.seq, reason)
        if event.prev_hash != expected_prev:
            return ChainReport(False, checked, event.seq,
                               "prev_hash does not match the previous event: "
                               "an event was inserted, deleted or rewritten before it")
        recomputed = event_hash(event.seq, event.at, event.actor, event.action,
                                event.object_type, event.object_id, event.summary,
                                event.prev_hash)
        if recomputed != event.hash:
            return ChainReport(False, checked, event.seq,
                               "hash does not match the content: the event was edited")
        expected_prev = event.hash
        expected_seq += 1
        checked += 1
    head = session.get(AuditHead, 1)
    last_seq = expected_seq - 1
    if head is None and last_seq > 0:
        return ChainReport(False, checked, last_seq,
                           "the head row is missing: it was deleted")
    if head is not None and (head.seq != last_seq or head.hash != expected_prev):
        return ChainReport(False, checked, last_seq + 1,
                           f"the chain ends at {last_seq} but its head says {head.seq}: "
                           "events were deleted from the end")
    return ChainReport(True, checked)


def list_events(session: Session, *, action: str | None = None,
                object_type: str | None = None, object_id: str | None = None,
                actor: str | None = None, since: datetime | None = None,
                until: datetime | None = None, after_seq: int | None = None,
                newest_first: bool = False, limit: int | None = 50,
                offset: int = 0) -> Page[AuditEvent]:
    """Events matching every filter given, by sequence number (oldest first unless
    ``newest_first``). ``action`` is an exact action or a prefix ending in ``.*``
    (``auth.*``); ``since`` is inclusive and ``until`` exclusive; ``after_seq`` picks up an
    incremental export where the last one stopped."""
    query = select(AuditEvent).order_by(AuditEvent.seq.desc() if newest_first
                                        else AuditEvent.seq)
    if action:
        if action.endswith(".*"):
            query = query.where(AuditEvent.action.like(f"{escape_like(action[:-1])}%",
                                                       escape=LIKE_ESCAPE))
        else:
            query = query.where(AuditEvent.action == action)
    if object_type:
        query = query.where(AuditEvent.object_type == object_type)
    if object_id:
        query = query.where(AuditEvent.object_id == object_id)
    if actor:
        query = query.where(AuditEvent.actor == actor)
    if since is not None:
        query = query.where(AuditEvent.at >= since)
    if until is not None:
        query = query.where(AuditEvent.at < until)
    if after_seq is not None:
        query = query.where(AuditEvent.seq > after_seq)
    return scalars_page(session, query, limit=limit, offset=offset)

"""The tamper-evident audit log, for DGCL administrators."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from api.audit_anchor import verify_in
from api.routing import ApiBlueprint, Call
from api.schema import PageQuery, make_page, page_of, rule
from core.audit import list_events

bp = ApiBlueprint("audit", __name__, url_prefix="/v1/audit", tag="Audit",
                  description="Read and verify the hash-chained audit log.")


@dataclass(frozen=True)
class EventQuery(PageQuery):
    action: str | None = field(default=None, metadata=rule(
        min_length=1, max_length=100, description="Exact action, or a prefix ending in .* "
                                                  "(e.g. auth.*)."))
    object_type: str | None = field(default=None, metadata=rule(min_length=1, max_length=50))
    object_id: str | None = field(default=None, metadata=rule(min_length=1, max_length=100))
    actor: str | None = field(default=None, metadata=rule(min_length=1, max_length=200))
    since: datetime | None = field(default=None, metadata=rule(
        description="Events at or after this time (RFC 3339)."))
    until: datetime | None = field(default=None, metadata=rule(
        description="Events before this time (RFC 3339)."))
    after_seq: int | None = field(default=None, metadata=rule(
        minimum=0, maximum=2_147_483_647, description="Events after this sequence number "
                                                      "(for incremental export)."))


@dataclass(frozen=True)
class EventOut:
    seq: int
    at: datetime
    actor: str
    action: str
    object_type: str
    object_id: str
    summary: dict[str, Any]
    prev_hash: str
    hash: str


@dataclass(frozen=True)
class ChainOut:
    ok: bool  # the chain verifies AND agrees with every anchored checkpoint
    checked: int
    first_broken_seq: int | None
    reason: str
    checkpoints: int = 0
    proved_seq: int | None = None  # proved intact up to this event...
    proved_at: datetime | None = None  # ...as of this time (the last checkpoint's)
    problems: list[str] = field(default_factory=list)
    summary: str = ""


@bp.operation("GET", "/events", action="audit.read", query=EventQuery,
              response=page_of(EventOut), summary="Audit events, oldest first")
def events(call: Call, query: EventQuery) -> object:
    found = list_events(
        call.session, action=query.action, object_type=query.object_type,
        object_id=query.object_id, actor=query.actor, since=query.since, until=query.until,
        after_seq=query.after_seq, limit=query.limit, offset=query.offset)
    items = [EventOut(e.seq, e.at, e.actor, e.action, e.object_type, e.object_id,
                      e.summary_dict, e.prev_hash, e.hash) for e in found.items]
    return make_page(EventOut, items, found.total, query.limit, query.offset)


@bp.operation("GET", "/verify", action="audit.read", response=ChainOut,
              summary="Verify the hash chain against its anchored checkpoints")
def verify_chain(call: Call) -> ChainOut:
    """Recompute the chain, check every checkpoint of the anchor store (its time-stamp and
    that the chain still holds its event), and say up to which event the log is proved
    intact, as of when."""
    report = verify_in(call.session, call.settings)
    first = report.first_problem
    chain = report.chain
    return ChainOut(report.ok, chain.checked,
                    chain.first_broken_seq if not chain.ok else (first.seq if first else None),
                    chain.reason if not chain.ok else (first.message if first else ""),
                    report.checkpoints, report.proved_seq, report.proved_at,
                    [p.message for p in report.problems], report.summary())

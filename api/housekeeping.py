"""Deleting the API's own rows once nothing reads them any more (expired idempotency
records, old rate-limit counters): one DELETE, and one audit event, in the same
transaction, for a run that deleted any. The periodic jobs of :mod:`api.jobs` call it
through :func:`api.idempotency.purge` and :func:`api.ratelimit.purge`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete
from sqlalchemy.orm import InstrumentedAttribute, Session

from core.audit import record
from core.clock import Clock, as_utc


def delete_before(session: Session, clock: Clock, model: type[Any],
                  column: InstrumentedAttribute[datetime], cutoff: datetime, *, actor: str,
                  action: str, counted: str) -> int:
    """Delete the rows of ``model`` whose ``column`` is before ``cutoff``; when any went,
    record how many (``counted``: the summary's key) under ``action``. Idempotent."""
    result = session.execute(delete(model).where(column < cutoff))
    erased = int(result.rowcount or 0)  # type: ignore[attr-defined]
    if erased:
        record(session, clock, actor=actor, action=action, object_type=model.__tablename__,
               object_id="*",
               summary={counted: erased, "older_than": as_utc(cutoff).isoformat()})
    return erased

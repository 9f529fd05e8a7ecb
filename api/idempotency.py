"""Idempotency keys: a retried POST gets the first response instead of doing it twice.

The client sends ``Idempotency-Key`` (1-255 visible characters). The first successful
response is stored with the key, the principal and a hash of the request, in the same
transaction as the work it answers; a retry with the same key and the same request gets it
back unchanged (header ``Idempotent-Replayed: true``). The same key with a different request
is refused. Records are kept ``idempotency_ttl_hours``; the ``idempotency-purge`` job
(:mod:`api.jobs`) deletes the older ones. Error responses are not stored, so a
retry after a failure runs again.

Concurrent requests with the same key are serialised (:func:`serialise`): the second waits
until the first commits or fails, then replays the stored response or, if there is none,
does the work itself. Without it, on PostgreSQL a request that looked before the first had
committed would run the work again and meet what the first created (a 409).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, select, text
from sqlalchemy.orm import Session

from api.errors import IdempotencyKeyReused, MalformedRequest
from api.housekeeping import delete_before
from api.models import IdempotencyRecord
from core.clock import Clock, as_utc
from core.db import is_postgres

HEADER = "Idempotency-Key"
KEY_PATTERN = re.compile(r"[\x21-\x7e]{1,255}")


@dataclass(frozen=True)
class Stored:
    status: int
    body: str
    location: str | None


def check_key(key: str) -> str:
    if not KEY_PATTERN.fullmatch(key):
        raise MalformedRequest(f"{HEADER} must be 1 to 255 visible ASCII characters")
    return key


def request_hash(method: str, path: str, body: bytes) -> str:
    digest = hashlib.sha256()
    for part in (method.encode(), path.encode(), body):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


def serialise(session: Session, principal: str, key: str) -> None:
    """Hold, until this transaction ends, a lock that every request with this principal and
    key takes before :func:`lookup`. On SQLite every transaction already holds the write
    lock from its start (``BEGIN IMMEDIATE``); PostgreSQL takes a transaction-level advisory
    lock on a 64-bit digest of the pair."""
    if not is_postgres(session):
        return
    digest = hashlib.sha256(f"tawqi-idempotency\0{principal}\0{key}".encode()).digest()
    session.execute(text("SELECT pg_advisory_xact_lock(:lock)"),
                    {"lock": int.from_bytes(digest[:8], "big", signed=True)})


def lookup(session: Session, clock: Clock, principal: str, key: str, req_hash: str,
           ttl: timedelta) -> Stored | None:
    """The stored response for this key, None if there is none (or it expired)."""
    row = session.scalar(select(IdempotencyRecord).where(
        IdempotencyRecord.principal == principal, IdempotencyRecord.key == key))
    if row is None:
        return None
    if as_utc(row.created_at) + ttl <= as_utc(clock.now()):
        session.execute(delete(IdempotencyRecord).where(IdempotencyRecord.id == row.id))
        return None
    if row.request_hash != req_hash:
        raise IdempotencyKeyReused(f"this {HEADER} was used for a different request")
    return Stored(row.status, row.body, row.location)


def store(session: Session, clock: Clock, principal: str, key: str, req_hash: str,
          response: Stored) -> None:
    session.add(IdempotencyRecord(principal=principal, key=key, request_hash=req_hash,
                                  status=response.status, body=response.body,
                                  location=response.location, created_at=clock.now()))
    session.flush()


def purge(session: Session, clock: Clock, ttl: timedelta, *, actor: str) -> int:
    """Delete the records older than ``ttl`` (:func:`lookup` would ignore them anyway) and,
    when any went, record how many in the audit log (same transaction). Returns the count.
    Idempotent: a second run finds nothing to delete."""
    return delete_before(session, clock, IdempotencyRecord, IdempotencyRecord.created_at,
                         clock.now() - ttl, actor=actor, action="idempotency.purged",
                         counted="records")

"""Rate limits kept in the database, so that every API process shares the same counts.

A limit is ``<count>/<seconds>`` (settings ``rate_limit_auth``, ``rate_limit_pin``,
``rate_limit_otp``): at most ``count`` hits of a bucket per fixed window of ``seconds``
that starts at the bucket's first hit. A hit is counted in its own committed transaction
before the guarded work runs, so a failed attempt (a wrong password, a wrong PIN) counts
even though the work itself rolls back.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from api.models import RateCounter
from core.clock import Clock, as_utc
from core.db import is_postgres
from core.errors import ConfigurationError, RateLimited


@dataclass(frozen=True)
class Limit:
    count: int
    seconds: int

    @classmethod
    def parse(cls, text: str, setting: str) -> Limit:
        match = re.fullmatch(r"\s*([0-9]+)\s*/\s*([0-9]+)\s*", text)
        if not match or int(match[1]) < 1 or int(match[2]) < 1:
            raise ConfigurationError(f"{setting} must look like 10/300 (count/seconds)")
        return cls(int(match[1]), int(match[2]))

    def __str__(self) -> str:
        return f"{self.count} per {self.seconds} s"


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    remaining: int
    retry_after: int  # seconds until the window resets


def hit(session: Session, clock: Clock, bucket: str, limit: Limit) -> RateDecision:
    """Count one hit of ``bucket``; refuse once the window's count exceeds the limit."""
    bucket = bucket[:200]
    now = as_utc(clock.now())
    insert = pg_insert if is_postgres(session) else sqlite_insert
    session.execute(insert(RateCounter).values(bucket=bucket, window_start=now, count=0)
                    .on_conflict_do_nothing())
    row = session.execute(select(RateCounter).where(RateCounter.bucket == bucket)
                          .with_for_update()).scalar_one()
    window = timedelta(seconds=limit.seconds)
    start = as_utc(row.window_start)
    if now - start >= window:
        row.window_start, row.count, start = now, 0, now
    # Capped, so a client hammering a closed bucket does not grow the count forever.
    row.count = min(row.count + 1, limit.count + 1)
    session.flush()
    retry = max(1, math.ceil((start + window - now).total_seconds()))
    return RateDecision(row.count <= limit.count, max(0, limit.count - row.count), retry)


def enforce(session: Session, clock: Clock, buckets: list[str], limit: Limit,
            what: str) -> None:
    """Hit every bucket (e.g. per user name and per address); raise if any is closed."""
    decisions = [hit(session, clock, bucket, limit) for bucket in buckets]
    refused = [d for d in decisions if not d.allowed]
    if refused:
        retry = max(d.retry_after for d in refused)
        raise RateLimited(f"too many {what}: at most {limit}; retry in {retry} s",
                          retry_after=retry, limit=limit.count, window_seconds=limit.seconds)

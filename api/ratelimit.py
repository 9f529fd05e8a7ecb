"""Rate limits kept in the database, so that every API process shares the same counts.

Two kinds of bucket live in ``api_rate_counter``:

- **Windows.** A limit is ``<count>/<seconds>`` (settings ``rate_limit_auth``,
  ``rate_limit_pin``, ``rate_limit_otp``, ``rate_limit_client``): at most ``count`` hits of
  a bucket per fixed window of ``seconds`` that starts at the bucket's first hit. A hit is
  counted in its own committed transaction before the guarded work runs, so a failed
  attempt (a wrong PIN) counts even though the work itself rolls back; :func:`refund`
  gives a hit back (a login whose password was right).
- **Backoffs** (failed logins of a user name): ``count`` is the number of failures and
  ``window_start`` the time of the last one. Below ``free_failures`` nothing waits; from
  then on the bucket is closed for ``2**(failures - free_failures)`` seconds after the last
  failure, capped at ``max_seconds``. Failures are forgotten a day after the last one.

The ``rate-counter-purge`` job (:mod:`api.jobs`, :func:`purge`) deletes the counters older
than ``TAWQI_RATE_COUNTER_RETENTION_HOURS`` (never less than a day nor the longest window).

:func:`login_attempt` and :func:`login_succeeded` combine them for logins (the API's and
the web form's); ``docs/api.md`` explains the design.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from api.housekeeping import delete_before
from api.models import RateCounter
from core.clock import Clock, as_utc
from core.config import Settings
from core.db import is_postgres
from core.errors import ConfigurationError, RateLimited

# Failures of a user name are forgotten this long after the last one.
FORGET_FAILURES_AFTER = timedelta(days=1)


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
class Backoff:
    """Exponential backoff after ``free_failures`` failures, capped at ``max_seconds``."""

    free_failures: int
    max_seconds: int

    def __post_init__(self) -> None:
        if self.free_failures < 1 or self.max_seconds < 1:
            raise ConfigurationError("TAWQI_LOGIN_FREE_FAILURES and "
                                     "TAWQI_LOGIN_BACKOFF_MAX_SECONDS must be at least 1")

    def delay(self, failures: int) -> int:
        """Seconds to wait after the last of ``failures`` failures."""
        if failures < self.free_failures:
            return 0
        return min(self.max_seconds, 2 ** min(failures - self.free_failures, 40))


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    remaining: int
    retry_after: int  # seconds until the window resets


def _row(session: Session, bucket: str, now: datetime) -> RateCounter:
    """The bucket's row, created empty if missing, locked for this transaction."""
    insert = pg_insert if is_postgres(session) else sqlite_insert
    session.execute(insert(RateCounter).values(bucket=bucket, window_start=now, count=0)
                    .on_conflict_do_nothing())
    return session.execute(select(RateCounter).where(RateCounter.bucket == bucket)
                           .with_for_update()).scalar_one()


def hit(session: Session, clock: Clock, bucket: str, limit: Limit) -> RateDecision:
    """Count one hit of ``bucket``; refuse once the window's count exceeds the limit."""
    bucket = bucket[:200]
    now = as_utc(clock.now())
    row = _row(session, bucket, now)
    window = timedelta(seconds=limit.seconds)
    start = as_utc(row.window_start)
    if now - start >= window:
        row.window_start, row.count, start = now, 0, now
    # Capped, so a client hammering a closed bucket does not grow the count forever.
    row.count = min(row.count + 1, limit.count + 1)
    session.flush()
    retry = max(1, math.ceil((start + window - now).total_seconds()))
    return RateDecision(row.count <= limit.count, max(0, limit.count - row.count), retry)


def refund(session: Session, clock: Clock, bucket: str, limit: Limit) -> None:
    """Give back one hit of ``bucket`` in its current window (the attempt was good)."""
    row = session.execute(select(RateCounter).where(RateCounter.bucket == bucket[:200])
                          .with_for_update()).scalar_one_or_none()
    if row is None or as_utc(clock.now()) - as_utc(row.window_start) >= \
            timedelta(seconds=limit.seconds):
        return
    row.count = max(0, min(row.count, limit.count) - 1)
    session.flush()


def enforce(session: Session, clock: Clock, buckets: list[tuple[str, Limit]],
            what: str) -> None:
    """Hit every bucket (e.g. per credential and per client); raise if any is closed."""
    decisions = [(hit(session, clock, bucket, limit), limit) for bucket, limit in buckets]
    refused = [(d, limit) for d, limit in decisions if not d.allowed]
    if refused:
        decision, limit = max(refused, key=lambda found: found[0].retry_after)
        raise RateLimited(f"too many {what}: at most {limit}; retry in "
                          f"{decision.retry_after} s", retry_after=decision.retry_after,
                          limit=limit.count, window_seconds=limit.seconds)


# --------------------------------------------------------------------------- logins


def _failures(session: Session, bucket: str, now: datetime) -> RateCounter | None:
    row = session.execute(select(RateCounter).where(RateCounter.bucket == bucket[:200])
                          .with_for_update()).scalar_one_or_none()
    if row is not None and now - as_utc(row.window_start) >= FORGET_FAILURES_AFTER:
        row.count = 0
    return row


def _wait(row: RateCounter | None, backoff: Backoff, now: datetime) -> int:
    if row is None or row.count == 0:
        return 0
    until = as_utc(row.window_start) + timedelta(seconds=backoff.delay(row.count))
    return max(0, math.ceil((until - now).total_seconds()))


def _fail(session: Session, bucket: str, now: datetime, backoff: Backoff) -> None:
    row = _row(session, bucket[:200], now)
    if now - as_utc(row.window_start) >= FORGET_FAILURES_AFTER:
        row.count = 0
    row.count = min(row.count + 1, backoff.free_failures + 64)
    row.window_start = now
    session.flush()


def _login_buckets(username: str, address: str) -> tuple[str, str, str]:
    name = username.strip().lower()[:64]
    return (f"auth:ip:{address}", f"auth:name:{name}", f"auth:pair:{address}|{name}")


def login_attempt(session: Session, clock: Clock, *, username: str, address: str,
                  limit: Limit, backoff: Backoff) -> None:
    """Call in a transaction of its own before checking a password; raise
    :class:`RateLimited` if this address may not try this name now.

    The attempt is counted as a failure before the password is checked (so that parallel
    guesses cannot overtake the count); :func:`login_succeeded`, in the login's own
    transaction, takes it back when the password was right. Refused:

    - an address with ``limit`` failures in the window, whatever the names;
    - an address in backoff for this name (its own failures on it);
    - an address that has failed on this name while the name is in backoff (failures from
      every address). An address with no failure on the name still gets its attempt, so
      whoever knows only the name cannot lock its owner out.
    """
    now = as_utc(clock.now())
    by_address, by_name, by_pair = _login_buckets(username, address)
    pair = _failures(session, by_pair, now)
    name = _failures(session, by_name, now)
    wait = _wait(pair, backoff, now)
    if pair is not None and pair.count > 0:
        wait = max(wait, _wait(name, backoff, now))
    if wait:
        raise RateLimited(f"too many failed logins for this user name from this address; "
                          f"retry in {wait} s", retry_after=wait)
    decision = hit(session, clock, by_address, limit)
    if not decision.allowed:
        raise RateLimited(f"too many failed logins from this address: at most {limit}; "
                          f"retry in {decision.retry_after} s",
                          retry_after=decision.retry_after, limit=limit.count,
                          window_seconds=limit.seconds)
    _fail(session, by_pair, now, backoff)
    _fail(session, by_name, now, backoff)


def login_succeeded(session: Session, clock: Clock, *, username: str, address: str,
                    limit: Limit) -> None:
    """The password was right: take back what :func:`login_attempt` counted and forget
    this address's failures on the name (the name keeps the others')."""
    by_address, by_name, by_pair = _login_buckets(username, address)
    now = as_utc(clock.now())
    refund(session, clock, by_address, limit)
    pair = _failures(session, by_pair, now)
    mine = pair.count if pair is not None else 1
    session.execute(delete(RateCounter).where(RateCounter.bucket == by_pair[:200]))
    name = _failures(session, by_name, now)
    if name is not None:
        name.count = max(0, name.count - max(1, mine))
    session.flush()


def purge(session: Session, clock: Clock, retention: timedelta, *, actor: str) -> int:
    """Delete the counters whose window (or last failure) started more than ``retention``
    ago; give it :func:`purge_retention`, so that no live count is forgotten. Records how
    many went in the audit log (same transaction) when any did. Idempotent."""
    return delete_before(session, clock, RateCounter, RateCounter.window_start,
                         clock.now() - retention, actor=actor, action="ratelimit.purged",
                         counted="counters")


def purge_retention(settings: Settings) -> timedelta:
    """How long a counter is kept: ``TAWQI_RATE_COUNTER_RETENTION_HOURS``, but at least a
    day (failed logins are forgotten then) and the longest window of the rate limits."""
    longest = max(limit_of(settings, kind).seconds
                  for kind in ("auth", "pin", "otp", "client", "verify"))
    return max(timedelta(hours=settings.rate_counter_retention_hours),
               FORGET_FAILURES_AFTER, timedelta(seconds=longest))


def limit_of(settings: Settings, kind: str) -> Limit:
    """The window limit of ``kind`` (auth, pin, otp, client) from the settings."""
    return Limit.parse(getattr(settings, f"rate_limit_{kind}"),
                       f"TAWQI_RATE_LIMIT_{kind.upper()}")


def login_policy(settings: Settings) -> tuple[Limit, Backoff]:
    """Failed logins per address, and the backoff of a user name."""
    return limit_of(settings, "auth"), Backoff(settings.login_free_failures,
                                               settings.login_backoff_max_seconds)

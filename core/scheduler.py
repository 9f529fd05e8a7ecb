"""Periodic jobs, run once per period however many workers tick.

A job is a name, a period and a callable. Each job has one ``scheduler_job`` row; a worker
that finds the job due takes a *lease* on it with one conditional UPDATE (the job is due and
nobody holds an unexpired lease), so of N workers ticking at once exactly one runs it. The
same statement works on SQLite (writers queue on ``BEGIN IMMEDIATE``) and PostgreSQL (the
row lock makes the second UPDATE re-check its condition and find the lease taken).

When the job ends, the holder of the lease records the outcome and when the job is next
due: ``period`` after the run started on success, ``retry`` after it on failure. A worker
that dies mid-job records nothing: its lease expires and the next tick of any worker runs
the job again, so a job must be idempotent (each of ours decides from the database what is
due). The row keeps the times of the last start, success and failure, a failure counter and
the *type* of the last error, never its message (an exception's text may quote a secret).

:class:`Scheduler` knows nothing of what the jobs do: the composition root (``api/jobs.py``)
builds the list from domain functions.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import DateTime, Integer, String, or_, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from core.clock import Clock, as_utc
from core.db import Base, dialect_insert, transaction

log = logging.getLogger("tawqi.jobs")

OUTCOME_OK = "ok"
OUTCOME_SKIPPED = "skipped"
OUTCOME_FAILED = "failed"


class SchedulerJob(Base):
    """The schedule and the last outcomes of one periodic job (one row per job name)."""

    __tablename__ = "scheduler_job"

    name: Mapped[str] = mapped_column(String(50), primary_key=True)
    next_due_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True),
                                                         nullable=True)
    lease_owner: Mapped[str | None] = mapped_column(String(100), nullable=True)
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True),
                                                         nullable=True)
    last_started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True),
                                                             nullable=True)
    last_succeeded_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True),
                                                               nullable=True)
    last_failed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True),
                                                            nullable=True)
    last_outcome: Mapped[str | None] = mapped_column(String(10), nullable=True)
    last_summary: Mapped[str] = mapped_column(String(200), default="")
    last_error_type: Mapped[str] = mapped_column(String(100), default="")
    runs: Mapped[int] = mapped_column(Integer, default=0)
    failures: Mapped[int] = mapped_column(Integer, default=0)


class JobSkipped(Exception):
    """Raised by a job that cannot run here (e.g. no service PIN): logged as a warning,
    not counted as a failure, and the job is due again after its period."""


@dataclass(frozen=True)
class JobSpec:
    """One periodic job. ``run`` returns a one-line summary (never a secret)."""

    name: str
    period: timedelta
    run: Callable[[], str]
    description: str = ""

    def __post_init__(self) -> None:
        if not self.name or len(self.name) > 50:
            raise ValueError("a job needs a name of at most 50 characters")
        if self.period <= timedelta(0):
            raise ValueError(f"job {self.name}: the period must be positive")


@dataclass(frozen=True)
class JobRun:
    name: str
    outcome: str
    summary: str
    started_at: datetime


@dataclass(frozen=True)
class JobState:
    """A job's row as read for ``tawqi jobs list`` and /metrics."""

    name: str
    next_due_at: datetime | None
    lease_owner: str | None
    lease_until: datetime | None
    last_started_at: datetime | None
    last_succeeded_at: datetime | None
    last_failed_at: datetime | None
    last_outcome: str | None
    last_summary: str
    last_error_type: str
    runs: int
    failures: int


def _utc(value: datetime | None) -> datetime | None:
    return None if value is None else as_utc(value)


def _state(row: SchedulerJob) -> JobState:
    return JobState(row.name, _utc(row.next_due_at), row.lease_owner, _utc(row.lease_until),
                    _utc(row.last_started_at), _utc(row.last_succeeded_at),
                    _utc(row.last_failed_at), row.last_outcome, row.last_summary,
                    row.last_error_type, row.runs, row.failures)


def job_states(session: Session) -> dict[str, JobState]:
    """Every job row, by name."""
    return {row.name: _state(row) for row in
            session.scalars(select(SchedulerJob).order_by(SchedulerJob.name))}


def ensure_jobs(session: Session, names: list[str]) -> None:
    """Create the rows of jobs never seen (due at once); concurrent callers are harmless."""
    if not names:
        return
    insert = dialect_insert(session)
    session.execute(insert(SchedulerJob).values(
        [{"name": name, "runs": 0, "failures": 0, "last_summary": "",
          "last_error_type": ""} for name in names]).on_conflict_do_nothing(
        index_elements=["name"]))


def default_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Scheduler:
    """Runs the due jobs of ``jobs`` on each :meth:`tick`. One per worker process; many
    may share a database. Not thread-safe itself: tick it from one thread."""

    def __init__(self, sessions: sessionmaker[Session], clock: Clock, jobs: list[JobSpec], *,
                 lease: timedelta, retry: timedelta, owner: str | None = None) -> None:
        names = [job.name for job in jobs]
        if len(set(names)) != len(names):
            raise ValueError("job names must be unique")
        self.sessions = sessions
        self.clock = clock
        self.jobs = {job.name: job for job in jobs}
        self.lease = lease
        self.retry = retry
        self.owner = owner or default_owner()
        self._ensured = False

    def _ensure(self) -> None:
        if not self._ensured:
            with transaction(self.sessions) as session:
                ensure_jobs(session, list(self.jobs))
            self._ensured = True

    def _take(self, name: str, *, force: bool) -> datetime | None:
        """The lease on ``name`` if it is due (or ``force``) and free; its start time."""
        now = as_utc(self.clock.now())
        condition = [SchedulerJob.name == name,
                     or_(SchedulerJob.lease_until.is_(None), SchedulerJob.lease_until <= now)]
        if not force:
            condition.append(or_(SchedulerJob.next_due_at.is_(None),
                                 SchedulerJob.next_due_at <= now))
        with transaction(self.sessions) as session:
            taken = session.execute(
                update(SchedulerJob).where(*condition)
                .values(lease_owner=self.owner, lease_until=now + self.lease,
                        last_started_at=now)
                .execution_options(synchronize_session=False))
        return now if taken.rowcount == 1 else None  # type: ignore[attr-defined]

    def _finish(self, job: JobSpec, started: datetime, outcome: str, summary: str,
                error_type: str = "") -> bool:
        now = as_utc(self.clock.now())
        values: dict[str, object] = {"lease_owner": None, "lease_until": None,
                                     "last_outcome": outcome, "last_summary": summary[:200],
                                     "runs": SchedulerJob.runs + 1}
        if outcome == OUTCOME_FAILED:
            values.update(next_due_at=started + self.retry, last_failed_at=now,
                          failures=SchedulerJob.failures + 1,
                          last_error_type=error_type[:100])
        else:
            values["next_due_at"] = started + job.period
            if outcome == OUTCOME_OK:
                values["last_succeeded_at"] = now
        with transaction(self.sessions) as session:
            result = session.execute(
                update(SchedulerJob).where(SchedulerJob.name == job.name,
                                           SchedulerJob.lease_owner == self.owner)
                .values(**values).execution_options(synchronize_session=False))
        done = result.rowcount == 1  # type: ignore[attr-defined]
        if not done:  # our lease expired and another worker took the job over
            log.warning("job %s: the lease was lost before the run ended", job.name)
        return done

    def _execute(self, job: JobSpec, started: datetime) -> JobRun:
        try:
            summary = job.run()
        except JobSkipped as exc:
            log.warning("job %s skipped: %s", job.name, exc)
            self._finish(job, started, OUTCOME_SKIPPED, f"skipped: {exc}")
            return JobRun(job.name, OUTCOME_SKIPPED, str(exc), started)
        except Exception as exc:
            # The type only: an exception's message may quote what it was given.
            error_type = f"{type(exc).__module__}.{type(exc).__qualname__}"
            log.error("job %s failed (%s); due again in %s", job.name, error_type,
                      self.retry)
            log.debug("job %s failure", job.name, exc_info=True)
            self._finish(job, started, OUTCOME_FAILED, "", error_type)
            return JobRun(job.name, OUTCOME_FAILED, error_type, started)
        log.info("job %s: %s", job.name, summary)
        self._finish(job, started, OUTCOME_OK, summary)
        return JobRun(job.name, OUTCOME_OK, summary, started)

    def tick(self) -> list[JobRun]:
        """Run every job that is due and not leased by another worker, one after the
        other. Returns what ran here."""
        self._ensure()
        runs = []
        for job in self.jobs.values():
            started = self._take(job.name, force=False)
            if started is not None:
                runs.append(self._execute(job, started))
        return runs

    def run(self, name: str, *, force: bool = True) -> JobRun | None:
        """Run ``name`` now (by hand): with ``force`` even if not due; ``None`` when another
        worker holds its lease (or, without ``force``, when it is not due)."""
        job = self.jobs.get(name)
        if job is None:
            raise KeyError(name)
        self._ensure()
        started = self._take(name, force=force)
        return None if started is None else self._execute(job, started)

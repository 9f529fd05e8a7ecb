"""The scheduler: once per period however many workers tick, leases that outlive a crashed
worker, failures recorded by type only. Real commits on both databases; each test uses job
names of its own, so the rows other tests leave do not matter."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from core.clock import FrozenClock
from core.db import Base, make_session_factory, transaction
from core.scheduler import (
    OUTCOME_FAILED,
    OUTCOME_OK,
    OUTCOME_SKIPPED,
    JobSkipped,
    JobSpec,
    Scheduler,
    job_states,
)

HOUR = timedelta(hours=1)


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def sessions(db_engine: Engine) -> sessionmaker[Session]:
    return make_session_factory(db_engine)


def _scheduler(sessions: sessionmaker[Session], clock: FrozenClock, jobs: list[JobSpec], *,
               owner: str, lease: timedelta = timedelta(minutes=15)) -> Scheduler:
    return Scheduler(sessions, clock, jobs, lease=lease, retry=timedelta(minutes=5),
                     owner=owner)


def _counting(runs: list[str], name: str) -> Callable[[], str]:
    lock = threading.Lock()

    def run() -> str:
        with lock:
            runs.append(name)
        return f"run {len(runs)}"

    return run


def _state(sessions: sessionmaker[Session], name: str):  # type: ignore[no-untyped-def]
    with transaction(sessions) as session:
        return job_states(session)[name]


def test_migration_matches_the_model(db_engine: Engine) -> None:
    with db_engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diffs = [d for d in compare_metadata(context, Base.metadata)
                 if "scheduler_job" in repr(d)]
    assert diffs == []


def test_a_job_runs_when_due_then_once_per_period(sessions: sessionmaker[Session],
                                                  clock: FrozenClock) -> None:
    name, runs = _name("every-hour"), []
    scheduler = _scheduler(sessions, clock, [JobSpec(name, HOUR, _counting(runs, name))],
                           owner="w1")
    first = scheduler.tick()
    assert [(r.name, r.outcome, r.summary) for r in first] == [(name, OUTCOME_OK, "run 1")]
    assert scheduler.tick() == []  # not due again yet
    clock.advance(timedelta(minutes=59))
    assert scheduler.tick() == []
    clock.advance(timedelta(minutes=1))
    assert [r.outcome for r in scheduler.tick()] == [OUTCOME_OK]
    state = _state(sessions, name)
    assert state.runs == 2 and state.failures == 0 and state.lease_owner is None
    assert state.last_succeeded_at == clock.now()
    assert state.next_due_at == clock.now() + HOUR
    # By hand: runs now even though it is not due, and the schedule follows from it.
    clock.advance(timedelta(minutes=10))
    manual = scheduler.run(name)
    assert manual is not None and manual.outcome == OUTCOME_OK and len(runs) == 3
    assert _state(sessions, name).next_due_at == clock.now() + HOUR


def test_failures_are_counted_by_type_and_retried_sooner(sessions: sessionmaker[Session],
                                                         clock: FrozenClock) -> None:
    name = _name("fails")
    secret = "PIN 48291735"
    attempts: list[int] = []

    def broken() -> str:
        attempts.append(1)
        if len(attempts) < 3:
            raise RuntimeError(f"could not log in with {secret}")
        return "fine again"

    scheduler = _scheduler(sessions, clock, [JobSpec(name, HOUR, broken)], owner="w1")
    assert [r.outcome for r in scheduler.tick()] == [OUTCOME_FAILED]
    state = _state(sessions, name)
    assert state.failures == 1 and state.last_error_type == "builtins.RuntimeError"
    assert secret not in repr(state)  # the message is never stored
    assert state.next_due_at == clock.now() + timedelta(minutes=5)  # the retry, not the period
    assert state.last_succeeded_at is None and state.lease_owner is None
    clock.advance(timedelta(minutes=5))
    assert [r.outcome for r in scheduler.tick()] == [OUTCOME_FAILED]
    clock.advance(timedelta(minutes=5))
    assert [r.outcome for r in scheduler.tick()] == [OUTCOME_OK]
    state = _state(sessions, name)
    assert state.failures == 2 and state.runs == 3 and state.last_summary == "fine again"
    assert state.last_succeeded_at == clock.now()


def test_a_skipped_job_is_neither_a_success_nor_a_failure(sessions: sessionmaker[Session],
                                                          clock: FrozenClock) -> None:
    name = _name("skips")

    def skip() -> str:
        raise JobSkipped("TAWQI_SERVICE_PIN is not set")

    scheduler = _scheduler(sessions, clock, [JobSpec(name, HOUR, skip)], owner="w1")
    assert [r.outcome for r in scheduler.tick()] == [OUTCOME_SKIPPED]
    state = _state(sessions, name)
    assert (state.failures, state.last_succeeded_at, state.last_outcome) == \
        (0, None, OUTCOME_SKIPPED)
    assert state.next_due_at == clock.now() + HOUR


def test_a_crashed_workers_lease_expires_and_another_runs_the_job(
        sessions: sessionmaker[Session], clock: FrozenClock) -> None:
    name, runs = _name("crash"), []
    lease = timedelta(minutes=15)
    job = JobSpec(name, HOUR, _counting(runs, name))
    crashed = _scheduler(sessions, clock, [job], owner="crashed", lease=lease)
    survivor = _scheduler(sessions, clock, [job], owner="survivor", lease=lease)
    crashed.tick()  # creates the row and runs once
    clock.advance(HOUR)
    # The crashed worker takes the lease, then dies before running or recording anything.
    assert crashed._take(name, force=False) is not None
    assert survivor.tick() == [] and survivor.run(name) is None  # leased: not even by hand
    assert _state(sessions, name).lease_owner == "crashed"
    clock.advance(lease)
    assert [r.outcome for r in survivor.tick()] == [OUTCOME_OK]
    assert len(runs) == 2
    # The crashed worker coming back cannot record over the survivor's run.
    started = clock.now() - lease
    assert crashed._finish(job, started, OUTCOME_OK, "late") is False
    assert _state(sessions, name).last_summary == "run 2"


def test_two_workers_ticking_together_run_each_job_once_per_period(
        sessions: sessionmaker[Session]) -> None:
    """Two schedulers (each its own thread and sessions) tick at every simulated ten
    minutes for a day: the hourly job runs 24 times, the six-hourly one 4 times."""
    clock = FrozenClock(datetime(2026, 6, 1, tzinfo=UTC))
    hourly, six_hourly = _name("hourly"), _name("six-hourly")
    runs: list[str] = []
    jobs = [JobSpec(hourly, HOUR, _counting(runs, hourly)),
            JobSpec(six_hourly, 6 * HOUR, _counting(runs, six_hourly))]
    schedulers = [_scheduler(sessions, clock, jobs, owner=f"worker-{i}") for i in (1, 2)]
    ran_by: dict[str, list[str]] = {s.owner: [] for s in schedulers}
    steps = 24 * 6
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def work(scheduler: Scheduler) -> None:
        try:
            for _ in range(steps):
                barrier.wait()  # both tick at the same simulated time
                ran_by[scheduler.owner].extend(r.name for r in scheduler.tick())
                if barrier.wait() == 0:  # one of them moves the clock, after both ticked
                    clock.advance(timedelta(minutes=10))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=work, args=(s,)) for s in schedulers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert runs.count(hourly) == 24 and runs.count(six_hourly) == 4
    assert sorted(ran_by["worker-1"] + ran_by["worker-2"]) == sorted(runs)
    state = _state(sessions, hourly)
    assert state.runs == 24 and state.failures == 0 and state.lease_owner is None

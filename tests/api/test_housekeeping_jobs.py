"""The housekeeping jobs of the API's own tables, on both databases with a moved clock:
``idempotency-purge`` deletes the idempotency records past TAWQI_IDEMPOTENCY_TTL_HOURS and
``rate-counter-purge`` the rate-limit counters past TAWQI_RATE_COUNTER_RETENTION_HOURS
(never less than a day), each keeping the fresh rows, recording what went in the audit log,
and running once per period however many workers tick."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.engine import Engine

from api import idempotency, ratelimit
from api.jobs import JOBS, make_scheduler
from api.models import IdempotencyRecord, RateCounter
from api.runtime import Runtime
from core.audit import AuditEvent
from core.clock import FrozenClock
from core.scheduler import OUTCOME_OK
from tests.api.conftest import make_settings, tick_together
from tests.conftest import FROZEN_AT

HOUSEKEEPING = tuple(j for j in JOBS if j.name in {"idempotency-purge", "rate-counter-purge"})
WINDOW = ratelimit.Limit(5, 60)


def _runtime(engine: Engine, tmp_path: Path, clock: FrozenClock, **overrides: object
             ) -> Runtime:
    return Runtime(make_settings(tmp_path, **overrides), clock=clock, engine=engine)


def _remember(rt: Runtime, key: str) -> None:
    with rt.unit_of_work() as session:
        idempotency.store(session, rt.clock, "user:1", key, "0" * 64,
                          idempotency.Stored(201, "{}", None))


def _hit(rt: Runtime, bucket: str) -> None:
    with rt.unit_of_work() as session:
        ratelimit.hit(session, rt.clock, bucket, WINDOW)


def _left(rt: Runtime) -> tuple[set[str], set[str], list[str]]:
    with rt.sessions() as session:
        keys = set(session.scalars(select(IdempotencyRecord.key)))
        buckets = set(session.scalars(select(RateCounter.bucket)))
        actions = list(session.scalars(select(AuditEvent.action).where(
            AuditEvent.action.in_(("idempotency.purged", "ratelimit.purged")))
            .order_by(AuditEvent.seq)))
    return keys, buckets, actions


def test_old_rows_go_and_fresh_ones_stay(own_engine: Engine, tmp_path: Path) -> None:
    clock = FrozenClock(FROZEN_AT)
    rt = _runtime(own_engine, tmp_path, clock)
    assert rt.settings.idempotency_ttl_hours == 24
    assert rt.settings.rate_counter_retention_hours == 48
    _remember(rt, "old")
    _hit(rt, "auth:ip:old")
    clock.advance(timedelta(hours=23))
    _hit(rt, "auth:ip:mid")  # 26 hours old at the purge, within 48
    clock.advance(timedelta(hours=1, minutes=30))
    _remember(rt, "fresh")
    clock.advance(timedelta(hours=24))  # "old" 48.5 h, "mid" 25.5 h, "fresh" 24 h

    scheduler = make_scheduler(rt, definitions=HOUSEKEEPING)
    runs = {r.name: r for r in scheduler.tick()}
    assert {name: run.outcome for name, run in runs.items()} == {
        "idempotency-purge": OUTCOME_OK, "rate-counter-purge": OUTCOME_OK}
    assert runs["idempotency-purge"].summary == "1 expired idempotency record(s) deleted"
    assert runs["rate-counter-purge"].summary == "1 old rate-limit counter(s) deleted"
    keys, buckets, actions = _left(rt)
    assert keys == {"fresh"}  # exactly 24 h old: not past the TTL yet
    assert buckets == {"auth:ip:mid"}
    assert sorted(actions) == ["idempotency.purged", "ratelimit.purged"]

    # By hand again: nothing left to delete, and no second audit event.
    again = scheduler.run("idempotency-purge")
    assert again is not None and again.summary.startswith("0 ")
    assert len(_left(rt)[2]) == 2


def test_a_short_retention_still_keeps_a_day_of_counters(own_engine: Engine,
                                                         tmp_path: Path) -> None:
    clock = FrozenClock(FROZEN_AT)
    rt = _runtime(own_engine, tmp_path, clock, rate_counter_retention_hours=1)
    assert ratelimit.purge_retention(rt.settings) == ratelimit.FORGET_FAILURES_AFTER
    _hit(rt, "auth:name:karim")  # failed logins are remembered a day
    clock.advance(timedelta(hours=3))
    run = make_scheduler(rt, definitions=HOUSEKEEPING).run("rate-counter-purge")
    assert run is not None and run.outcome == OUTCOME_OK
    assert _left(rt)[1] == {"auth:name:karim"}
    clock.advance(timedelta(hours=22))
    make_scheduler(rt, definitions=HOUSEKEEPING).run("rate-counter-purge")
    assert _left(rt)[1] == set()


def test_two_workers_run_each_once_per_period(own_engine: Engine, tmp_path: Path) -> None:
    clock = FrozenClock(FROZEN_AT)
    settings = make_settings(tmp_path, job_idempotency_purge_seconds=3600,
                             job_rate_counter_purge_seconds=7200)
    workers = [Runtime(settings, clock=clock, engine=own_engine) for _ in range(2)]
    schedulers = [make_scheduler(rt, owner=f"worker-{i}", definitions=HOUSEKEEPING)
                  for i, rt in enumerate(workers)]
    ran: list[str] = []
    for hour in range(6):
        _remember(workers[0], f"key-{hour}")
        _hit(workers[1], f"auth:ip:{hour}")
        tick_together(schedulers, ran)
        clock.advance(timedelta(hours=1))
    # Six hourly ticks of two workers: an hourly job six times, a two-hourly one three.
    assert {name: ran.count(name) for name in set(ran)} == {
        "idempotency-purge": 6, "rate-counter-purge": 3}
    keys, _buckets, actions = _left(workers[0])
    assert keys == {f"key-{hour}" for hour in range(6)}  # none past 24 h yet
    assert actions == []  # nothing deleted, nothing recorded

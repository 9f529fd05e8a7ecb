"""Worker processes for the production tests of the certificate's year: each is a spawned
Python process with its own Runtime (its own database engine, its own token library reaching
the one token server, its own frozen clock) and scheduler, as a `tawqi worker` or a gunicorn
worker is. The test drives them over a pipe; a barrier makes two of them act at once."""

from __future__ import annotations

import multiprocessing
from datetime import datetime
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Barrier
from typing import Any

from core.config import Settings

NOTICE_JOBS = ("expiry-warnings", "handover-reminders", "campaign-notices")


def serve(conn: Connection, settings: Settings, database_url: str, at: str,
          barrier: Barrier) -> None:
    from api.jobs import JOBS, make_scheduler
    from api.runtime import Runtime
    from api.wiring import Wiring
    from core.clock import FrozenClock
    from core.db import make_engine
    from core.errors import TawqiError
    from delivery import campaigns, incidents, reminders, requests

    clock = FrozenClock(datetime.fromisoformat(at))
    rt = Runtime(settings, clock=clock, engine=make_engine(database_url))
    wiring = Wiring(rt)
    scheduler = make_scheduler(rt, owner=f"worker-{multiprocessing.current_process().pid}",
                               definitions=tuple(j for j in JOBS if j.name in NOTICE_JOBS))

    def renew(request_id: int) -> int:
        barrier.wait(timeout=60)
        with rt.unit_of_work() as session:
            return requests.submit_renewal(session, clock, request_id, actor="operator").id

    def report(request_id: int, incident: str) -> int:
        personaliser = wiring.personaliser()  # the CA loaded before the race, as in a server
        barrier.wait(timeout=60)
        with rt.unit_of_work() as session:
            return incidents.report_token_incident(
                session, clock, request_id, incident=incident, note="reported in a race",
                actor="contact", personaliser=personaliser).id

    def provision() -> None:
        """What the installer does once: the CA and the envelope key, on the token server."""
        from tests.api.conftest import provision_service_tokens

        provision_service_tokens(rt)

    def credential(contact_id: int, commune: str, form: str, until: str) -> int:
        """A holder of ``commune`` and their request, along the real flow to ``until``
        (``active``, or ``delivered`` for a device token)."""
        from delivery import batches
        from delivery.personalisation import personalise_request
        from delivery.validation import s10_check_digit
        from tests.delivery.conftest import make_holder

        with rt.unit_of_work() as session:
            holder = make_holder(session, clock, commune)
            found = requests.submit_request(session, clock, contact_id=contact_id,
                                            holder_id=holder.id, token_form=form,
                                            actor="contact")
            requests.approve_request(session, clock, found.id, actor="operator",
                                     identity_check="CIN seen")
            request_id = found.id
        with rt.unit_of_work() as session:
            personalise_request(session, clock, request_id,
                                personaliser=wiring.personaliser(), sealer=wiring.sealer(),
                                actor="operator", policy=wiring.policy)
        with rt.unit_of_work() as session:
            if form == "device":
                batch = batches.prepare_batch(session, clock, holder.province_code,
                                              actor="operator")
                digits = f"{request_id * 7919 % 10**8:08d}"
                batches.dispatch_batch(session, clock, batch.id, actor="operator",
                                       policy=wiring.policy, tracking_number=(
                                           f"EE{digits}{s10_check_digit(digits)}MA"))
                batches.receive_batch(session, clock, batch.id, actor="contact")
            if until == "active":
                requests.activate_request(session, clock, request_id, actor="operator",
                                          supersede=lambda serial: None)
        return request_id

    def set_clock(iso: str) -> None:
        clock.set(datetime.fromisoformat(iso))

    def tick() -> list[tuple[str, str]]:
        """Both workers tick their schedulers at once, then call the jobs' domain functions
        at once outside the scheduler's lease (each must still queue nothing twice)."""
        barrier.wait(timeout=60)
        ran = [(run.name, run.outcome) for run in scheduler.tick()]
        barrier.wait(timeout=60)
        with rt.unit_of_work() as session:
            reminders.send_expiry_warnings(session, clock, thresholds=(60, 30, 7),
                                           actor="test")
        with rt.unit_of_work() as session:
            reminders.send_handover_reminders(session, clock, overdue_days=7, actor="test")
        with rt.unit_of_work() as session:
            campaigns.send_campaign_notices(session, clock, actor="test")
        return ran

    commands: dict[str, Any] = {"renew": renew, "report": report, "set_clock": set_clock,
                                "tick": tick, "provision": provision,
                                "credential": credential}
    try:
        while True:
            name, args = conn.recv()
            if name == "quit":
                break
            try:
                conn.send(("ok", commands[name](*args)))
            except TawqiError as exc:
                conn.send((type(exc).__name__, exc.detail))
            except Exception as exc:  # reported to the test, which fails on it
                conn.send((f"unexpected {type(exc).__name__}", str(exc)[:500]))
    finally:
        rt.close()


class Worker:
    """One worker process and its end of the pipe."""

    def __init__(self, ctx: Any, settings: Settings, database_url: str, at: datetime,
                 barrier: Barrier) -> None:
        self.barrier = barrier  # kept alive until the children have unpickled it
        self.conn, child_end = ctx.Pipe()
        self.process = ctx.Process(target=serve, daemon=True, args=(
            child_end, settings, database_url, at.isoformat(), barrier))
        self.process.start()

    def send(self, name: str, *args: Any) -> None:
        self.conn.send((name, args))

    def receive(self, name: str) -> tuple[str, Any]:
        if not self.conn.poll(180):
            raise TimeoutError(f"worker did not answer {name}")
        result: tuple[str, Any] = self.conn.recv()
        return result

    def call(self, name: str, *args: Any) -> tuple[str, Any]:
        self.send(name, *args)
        return self.receive(name)

    def stop(self) -> None:
        if self.process.is_alive():
            self.conn.send(("quit", ()))
            self.process.join(30)
        if self.process.is_alive():  # pragma: no cover - only if a worker hangs
            self.process.terminate()
            self.process.join(10)


def start_workers(count: int, settings: Settings, database_url: str,
                  at: datetime) -> list[Worker]:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(count)
    return [Worker(ctx, settings, database_url, at, barrier) for _ in range(count)]


def together(workers: list[Worker], calls: list[tuple[str, tuple[Any, ...]]]
             ) -> list[tuple[str, Any]]:
    """Send each worker its call (they meet at the barrier inside), then collect."""
    for worker, (name, args) in zip(workers, calls, strict=True):
        worker.send(name, *args)
    return [worker.receive(name) for worker, (name, _) in zip(workers, calls, strict=True)]

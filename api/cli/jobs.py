"""``tawqi jobs``: the periodic jobs that ``tawqi worker`` runs (see ``api/jobs.py``).

``list`` shows each job's period, last success and next due time and who holds its lease;
``run NAME`` runs one now, whatever its schedule (unless another worker is running it);
``tick`` runs the jobs that are due once, for a deployment that prefers cron to a worker.
"""

from __future__ import annotations

import click

from api.cli.common import pass_runtime, print_table
from api.jobs import JOBS, make_scheduler
from api.runtime import Runtime
from core.scheduler import OUTCOME_FAILED, JobRun, job_states


def _when(value: object) -> str:
    return "" if value is None else f"{value:%Y-%m-%d %H:%M:%S}"


def _report(run: JobRun) -> None:
    click.echo(f"{run.name}: {run.outcome} — {run.summary}")


@click.group("jobs")
def jobs_group() -> None:
    """Periodic jobs (CRL, OCSP, expiry warnings, reminders, purges, anchoring)."""


@jobs_group.command("list")
@pass_runtime
def jobs_list(runtime: Runtime) -> None:
    """Each job: period, last outcome and success, failures, next due, lease."""
    with runtime.unit_of_work() as session:
        states = job_states(session)
    now = runtime.clock.now()
    rows = []
    for spec in make_scheduler(runtime).jobs.values():
        state = states.get(spec.name)
        if state is None:
            rows.append((spec.name, spec.period, "never run", "", 0, "now", ""))
            continue
        leased = state.lease_until is not None and state.lease_until > now
        rows.append((spec.name, spec.period, state.last_outcome or "never run",
                     _when(state.last_succeeded_at), state.failures,
                     _when(state.next_due_at) or "now",
                     f"{state.lease_owner} until {_when(state.lease_until)}" if leased else ""))
    print_table(["job", "period", "last", "last success", "failures", "next due", "lease"],
                rows)


@jobs_group.command("run")
@click.argument("name", type=click.Choice([d.name for d in JOBS]))
@pass_runtime
def jobs_run(runtime: Runtime, name: str) -> None:
    """Run job NAME now, even if it is not due."""
    run = make_scheduler(runtime).run(name)
    if run is None:
        click.echo(f"{name}: another worker is running it now")
        return
    _report(run)
    if run.outcome == OUTCOME_FAILED:
        raise SystemExit(1)


@jobs_group.command("tick")
@pass_runtime
def jobs_tick(runtime: Runtime) -> None:
    """Run the jobs that are due now, once (cron's alternative to the worker's loop)."""
    runs = make_scheduler(runtime).tick()
    for run in runs:
        _report(run)
    if not runs:
        click.echo("no job due")
    if any(run.outcome == OUTCOME_FAILED for run in runs):
        raise SystemExit(1)


COMMANDS = [jobs_group]

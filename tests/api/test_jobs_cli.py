"""``tawqi jobs list|run|tick`` through click's runner, on the embedded database and a SoftHSM2
directory of their own, and the worker's scheduler thread."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from api.jobs import JOBS, start_scheduler
from api.runtime import Runtime
from core.config import Settings
from core.scheduler import job_states
from tests.cli_support import CLI_SERVICE_PIN, cli_environment, invoke, run_ok

pytestmark = pytest.mark.hsm

PIN = CLI_SERVICE_PIN


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    return cli_environment(tmp_path, monkeypatch)


def _rows(output: str) -> dict[str, str]:
    return {line.split()[0]: line for line in output.splitlines()[2:] if line.strip()}


def test_list_run_and_tick(env: dict[str, str]) -> None:
    run_ok(env, "db", "upgrade")
    run_ok(env, "ca", "init")
    before = _rows(run_ok(env, "jobs", "list"))
    assert set(before) == {d.name for d in JOBS}
    assert "never run" in before["crl-republish"] and "now" in before["crl-republish"]

    out = run_ok(env, "jobs", "run", "crl-republish")
    assert out.startswith("crl-republish: ok — CRL not due")  # `ca init` just published one
    out = run_ok(env, "jobs", "run", "ocsp-resign")
    assert "ocsp-resign: ok — " in out and "OCSP answer(s) signed" in out
    listed = _rows(run_ok(env, "jobs", "list"))
    assert " ok " in listed["crl-republish"] and "0:15:00" in listed["crl-republish"]
    assert "never run" in listed["expiry-warnings"]

    ticked = run_ok(env, "jobs", "tick")  # what is due: everything not run yet
    assert {line.split(":")[0] for line in ticked.splitlines()} == \
        {"expiry-warnings", "handover-reminders", "envelope-purge", "audit-anchor",
         "campaign-notices", "idempotency-purge", "rate-counter-purge"}
    assert run_ok(env, "jobs", "tick").strip() == "no job due"

    unknown = invoke(env, "jobs", "run", "make-coffee")
    assert unknown.exit_code == 2 and "'make-coffee' is not one of" in unknown.output

    without_pin = {k: v for k, v in env.items() if k != "TAWQI_SERVICE_PIN"}
    skipped = run_ok(without_pin, "jobs", "run", "crl-republish")
    assert skipped.startswith("crl-republish: skipped — TAWQI_SERVICE_PIN is not set")


def test_the_worker_runs_the_jobs_in_a_thread(env: dict[str, str]) -> None:
    run_ok(env, "db", "upgrade")
    run_ok(env, "ca", "init")
    runtime = Runtime(Settings.from_env(env))
    stop = threading.Event()
    try:
        thread = start_scheduler(runtime, stop)
        # Wait for its first tick to have run every job, then stop it.
        while thread.is_alive():
            with runtime.unit_of_work() as session:
                states = job_states(session)
            if len(states) == len(JOBS) and all(s.runs for s in states.values()):
                break
            stop.wait(0.05)
        stop.set()
        thread.join()
    finally:
        runtime.close()
    assert {name: state.last_outcome for name, state in states.items()} == \
        {d.name: "ok" for d in JOBS}

"""``tawqi audit anchor`` / ``tawqi audit verify`` and the anchoring after CA operations and
from the worker, through click's runner on an embedded database and a SoftHSM2 directory of
their own."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from api.runtime import Runtime
from core.audit import record
from core.config import Settings
from tests.cli_support import CLI_SERVICE_PIN, cli_environment, invoke, run_ok

pytestmark = pytest.mark.hsm

PIN = CLI_SERVICE_PIN


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    return cli_environment(tmp_path, monkeypatch)


def test_anchor_and_verify_through_the_cli(env: dict[str, str]) -> None:
    var = Path(env["TAWQI_VAR_DIR"])
    run_ok(env, "db", "upgrade")
    assert "NOTHING is anchored" in run_ok(env, "audit", "verify")

    # A CA operation anchors the log once it committed.
    out = run_ok(env, "ca", "init")
    assert "audit log anchored: checkpoint 1 at seq" in out and PIN not in out
    anchors = var / "audit-anchors"
    assert [p.name for p in anchors.iterdir()] == ["checkpoint-00000001.json"]
    out = run_ok(env, "audit", "verify")
    assert out.startswith("audit chain intact: ") and "; proved intact up to seq " in out
    assert "1 event(s) after it are chained but not yet anchored" in out

    assert "nothing to anchor: unchanged since checkpoint 1" in run_ok(env, "audit", "anchor")
    out = run_ok(env, "audit", "anchor", "--force")
    assert out.startswith("checkpoint 2: seq ") and str(anchors) in out

    # Without the PIN: a warning, nothing anchored, no failure.
    no_pin = {k: v for k, v in env.items() if k != "TAWQI_SERVICE_PIN"}
    assert "TAWQI_SERVICE_PIN is not set: nothing anchored" in run_ok(no_pin, "audit", "anchor")

    # Trusting only a certificate that is not our TSA's: every checkpoint is refused.
    wrong = invoke(env, "audit", "verify", "--tsa-cert", str(var / "pki" / "issuing.pem"))
    assert wrong.exit_code == 1 and "not signed by a trusted TSA certificate" in wrong.output

    # Someone with write access to the database deletes the whole log.
    with sqlite3.connect(var / "tawqi.db") as db:
        db.execute("DELETE FROM audit_event")
        db.execute("DELETE FROM audit_head")
    broken = invoke(env, "audit", "verify")
    assert broken.exit_code == 1
    assert "audit log TAMPERED" in broken.output
    assert "the log ends at seq 0: events were deleted" in broken.output


def test_worker_job_anchors_what_changed(env: dict[str, str]) -> None:
    run_ok(env, "db", "upgrade")
    run_ok(env, "ca", "init")
    runtime = Runtime(Settings.from_env(env))
    try:
        with runtime.unit_of_work() as session:
            record(session, runtime.clock, actor="test", action="thing.changed",
                   object_type="thing", object_id=1)
    finally:
        runtime.close()
    assert "audit-anchor: ok — checkpoint 2 at seq" in run_ok(env, "jobs", "run", "audit-anchor")
    # Nothing changed since (but the anchoring's own record): no new checkpoint.
    assert "unchanged" in run_ok(env, "jobs", "run", "audit-anchor")
    anchors = Path(env["TAWQI_VAR_DIR"]) / "audit-anchors"
    assert sorted(p.name for p in anchors.iterdir()) == ["checkpoint-00000001.json",
                                                         "checkpoint-00000002.json"]
    assert "proved intact" in run_ok(env, "audit", "verify")

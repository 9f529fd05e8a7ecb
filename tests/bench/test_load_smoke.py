"""The bounded load test (``bench/load.py``) runs end to end: a few seconds, four clients (one
per role), and every check it makes afterwards passes. No timing is asserted."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_load_smoke_checks_pass() -> None:
    # The bench builds its own deployment: keep this run's settings and token server away.
    env = {key: value for key, value in os.environ.items()
           if not key.startswith("TAWQI_") and key not in ("SOFTHSM2_CONF",
                                                             "P11_KIT_SERVER_ADDRESS")}
    done = subprocess.run(
        [sys.executable, "-m", "bench.load", "--seconds", "5", "--clients", "4",
         "--alone-seconds", "1", "--communes", "1", "--drain-seconds", "60"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    lines = done.stdout.strip().splitlines()
    assert "checks: all passed" in lines, output
    assert "errors: 0" in lines, output
    for check in ("check quotas:", "check notices:", "check audit:"):
        assert any(line.startswith(check) for line in lines), output
    assert lines[-1].startswith("signhash_under_mix_vs_alone="), output
    # The mix really ran every role.
    for operation in ("request.submit", "csc.signHash", "verify", "ocsp.get", "ocsp.post"):
        assert any(line.startswith(operation + " ") for line in lines), output

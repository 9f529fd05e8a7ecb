"""The benchmarks of issue 16 run end to end with tiny sizes and print their last line; the
shared bound (bench/bounded.py) names the step that overran. No timing is asserted."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench import bounded

ROOT = Path(__file__).resolve().parents[2]


def _run(*argv: str) -> list[str]:
    # Each bench builds its own deployment: keep this run's settings and token server away.
    env = {key: value for key, value in os.environ.items()
           if not key.startswith("TAWQI_") and key not in ("SOFTHSM2_CONF",
                                                             "P11_KIT_SERVER_ADDRESS")}
    done = subprocess.run([sys.executable, "-m", *argv], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=1200)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    return done.stdout.strip().splitlines()


def test_a_step_that_overruns_is_named() -> None:
    with pytest.raises(bounded.StepOverran, match=r"^overran: spin: no answer within 0.2 s$"):
        with bounded.step("spin", 0.2):
            while True:
                time.sleep(0.01)
    with bounded.step("quick", 5):  # and the alarm is off afterwards
        pass
    time.sleep(0.3)


def test_sign_pdf_smoke() -> None:
    lines = _run("bench.sign_pdf", "--rounds", "1")
    assert any(line.startswith("pyHanko PdfSigner in-process with its own") for line in lines)
    for level in ("B-B", "B-T", "B-LT", "B-LTA"):
        assert any(line.startswith(f"{level}: in-process") for line in lines), lines
    assert lines[-1].startswith("ratio_vs_pyhanko=")


def test_verify_smoke() -> None:
    lines = _run("bench.verify", "--seconds", "0.2", "--burst", "2")
    assert any(line.startswith("B-LT x2:") and "pyHanko" in line and "first calls" in line
               and "through requests" in line for line in lines), lines
    assert lines[-1].startswith("ratio_vs_pyhanko=")


def test_sign_hash_smoke() -> None:
    lines = _run("bench.sign_hash", "--batch", "20", "--rounds", "1")
    assert any("workers_ratio=" in line and "TAWQI_SIGNING_LANES=1" in line
               for line in lines), lines
    assert any("as configured (signing lanes on)" in line for line in lines), lines
    assert any(line.startswith("http / bare python-pkcs11, round by round:")
               for line in lines), lines
    assert any(line.startswith("bare python-pkcs11 loop, same key and module")
               for line in lines), lines
    assert any(line.startswith("our token layer in process (counts in the database")
               and "through the batch path" in line for line in lines), lines
    assert any(line.startswith("http_vs_token_layer=") for line in lines), lines
    assert lines[-1].startswith("ratio_vs_raw=")


def test_memory_smoke() -> None:
    lines = _run("bench.memory", "--calls", "2", "--warmup", "1", "--notifications", "30")
    assert any(line.startswith("API worker") for line in lines), lines
    assert any(line.startswith("outbox worker") and "30 notifications" in line
               for line in lines), lines
    assert lines[-1].startswith("api_worker_growth=")


def test_cli_start_smoke() -> None:
    lines = _run("bench.cli_start", "--runs", "1")
    assert lines[-1].startswith("quotas_show_vs_python_pass=")

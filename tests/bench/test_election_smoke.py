"""The election bench (``bench/election.py``) runs end to end with a few communes and two
processes, and every check it makes afterwards passes. No timing is asserted."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_election_smoke_checks_pass() -> None:
    # The bench builds its own deployment: keep this run's settings and token server away.
    env = {key: value for key, value in os.environ.items()
           if not key.startswith("TAWQI_") and key not in ("SOFTHSM2_CONF",
                                                             "P11_KIT_SERVER_ADDRESS")}
    done = subprocess.run(
        [sys.executable, "-m", "bench.election", "--communes", "4", "--processes", "2",
         "--raw-count", "5"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    lines = done.stdout.strip().splitlines()
    assert "checks: all passed" in lines, output
    assert any(line.startswith("raw limit: ") for line in lines), output
    assert any(line.startswith("installed: 4 outgoing revoked") for line in lines), output
    assert lines[-1].startswith("rotations_per_second="), output


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_election_drill_two_workers_die_and_the_preparation_resumes(
        database: str, request: pytest.FixtureRequest) -> None:
    """Two worker processes of the campaign's preparation die (one after a batch's commit,
    before writing its certificates to the tokens; one inside a batch's transaction). The
    preparation run again finishes: every request personalised once, one certificate each,
    every certificate written to its token, nothing prepared and left unsigned, the audit
    chain intact (the bench's checks)."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith("TAWQI_") and key not in ("SOFTHSM2_CONF",
                                                             "P11_KIT_SERVER_ADDRESS")}
    postgres = ["--postgres", request.getfixturevalue("postgres_server_url")] \
        if database == "postgresql" else []
    done = subprocess.run(
        [sys.executable, "-m", "bench.election", "--communes", "6", "--processes", "2",
         "--batch", "2", "--drill", "--raw-count", "3", *postgres], cwd=ROOT, env=env,
        capture_output=True, text=True, timeout=900)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    lines = done.stdout.strip().splitlines()
    assert any(line.startswith("drill: worker 0 died") for line in lines), output
    # worker 1 died inside a batch's transaction: the tokens it had made for that batch
    # are found by the resumed preparation and wiped, and none is left
    orphans = next(line for line in lines if line.startswith("orphans: "))
    assert not orphans.startswith("orphans: 0 ") and orphans.endswith(", 0 left"), output
    assert "checks: all passed" in lines, output
    assert any(line.startswith("installed: 6 outgoing revoked (one CRL) and 6 tokens "
                               "activated") for line in lines), output

"""Start-up of the ``tawqi`` command, as whole processes, against ``python -c pass``.

Each command runs several times in a fresh process; the best run counts (the least disturbed
by the machine). ``tawqi quotas show`` reads a real embedded database prepared once under a
temporary directory. Goal (issue 16): ``tawqi --help`` and ``tawqi quotas show`` each under
0.4 s. The last line is the ratio of ``tawqi quotas show`` to a bare interpreter start.

    python -m bench.cli_start [--runs 9]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TIMEOUT = 60


def best_of(runs: int, argv: list[str], env: dict[str, str]) -> float:
    best = float("inf")
    for index in range(runs + 1):
        started = time.perf_counter()
        try:
            subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL,
                           timeout=TIMEOUT)
        except subprocess.TimeoutExpired as exc:
            raise SystemExit(f"overran: {' '.join(argv)}: no answer within {TIMEOUT} s") \
                from exc
        if index:  # the first run writes the bytecode caches
            best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()
    tawqi = str(Path(sys.executable).with_name("tawqi"))
    with tempfile.TemporaryDirectory(prefix="tawqi-cli-") as directory:
        # Bytecode caches as an installed package has them: the first run of each command
        # writes them (a machine-wide PYTHONDONTWRITEBYTECODE would make every run compile
        # our modules from source) and is not counted.
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("TAWQI_") and k != "PYTHONDONTWRITEBYTECODE"}
        env["TAWQI_VAR_DIR"] = directory
        for step in (["db", "upgrade"], ["refdata", "load"]):
            subprocess.run([tawqi, *step], env=env, check=True, stdout=subprocess.DEVNULL,
                           timeout=600)
        python = best_of(args.runs, [sys.executable, "-c", "pass"], env)
        helped = best_of(args.runs, [tawqi, "--help"], env)
        shown = best_of(args.runs, [tawqi, "quotas", "show", "01.051.01.01", "--year", "2026",
                                    "--format", "json"], env)
    print(f"python -c pass:        {python * 1000:7.1f} ms (best of {args.runs})")
    print(f"tawqi --help:          {helped * 1000:7.1f} ms  goal < 400 ms")
    print(f"tawqi quotas show:     {shown * 1000:7.1f} ms  goal < 400 ms")
    print(f"help_vs_python_pass={helped / python:.2f}")
    print(f"quotas_show_vs_python_pass={shown / python:.2f}")


if __name__ == "__main__":
    main()

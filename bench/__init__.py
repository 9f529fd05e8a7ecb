"""Benchmarks: each measures our path and its outside baseline in one run (docs/benchmarks.md)."""

from __future__ import annotations

from pathlib import Path


def end_token_server(directory: Path) -> None:
    """End the token servers a bench's embedded runtime started under ``directory`` (by the
    pid in each pid file) before the directory is removed: they would otherwise wait out
    their idle timeout."""
    from hsm.server import stop_server

    for pid_file in directory.glob("**/hsm/pkcs11.pid"):
        stop_server(pid_file)

"""A throwaway PostgreSQL cluster for the test session, from Debian's binaries.

Used when TAWQI_TEST_DATABASE_URL is not set. initdb refuses to run as root, so as root the
cluster belongs to the ``postgres`` system user (created by Debian's postgresql package).
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path


def _bin(name: str) -> str:
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
    found = candidates[0] if candidates else shutil.which(name)
    if not found:
        raise RuntimeError(f"PostgreSQL's {name} is not installed (apt-get install postgresql)")
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ThrowawayCluster:
    def __init__(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="tawqi-pg-"))
        self.port = _free_port()
        self.user = "postgres" if os.geteuid() == 0 else os.environ.get("USER", "postgres")
        self._as_user: list[str] = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 \
            else []

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://{self.user}@127.0.0.1:{self.port}/postgres"

    def start(self) -> ThrowawayCluster:
        if os.geteuid() == 0:
            shutil.chown(self.directory, "postgres", "postgres")
        data = self.directory / "data"
        subprocess.run([*self._as_user, _bin("initdb"), "-D", str(data), "-A", "trust", "-U",
                        self.user, "-E", "UTF8", "--no-sync"], check=True,
                       capture_output=True)
        options = (f"-F -p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 "
                   "-c max_connections=200 -c fsync=off")
        subprocess.run([*self._as_user, _bin("pg_ctl"), "-D", str(data), "-o", options,
                        "-l", str(self.directory / "log"), "-w", "start"], check=True,
                       capture_output=True)
        return self

    def stop(self) -> None:
        subprocess.run([*self._as_user, _bin("pg_ctl"), "-D", str(self.directory / "data"),
                        "-m", "immediate", "stop"], capture_output=True, check=False)
        shutil.rmtree(self.directory, ignore_errors=True)

"""A chunked upload (no Content-Length) over TAWQI_MAX_UPLOAD_MB gets 413 from the service as
production runs it: a real gunicorn (deploy/gunicorn.conf.py, one sync worker) on 127.0.0.1,
over an embedded database the ``tawqi`` commands created. Gunicorn, unlike werkzeug's
development server, marks its input terminated (``wsgi.input_terminated``): this is the path
api/bodies.py bounds. The process is ended by its pid."""

from __future__ import annotations

import base64
import http.client
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.cli_support import cli_environment
from tests.pki.test_pades_pki import permit_pdf

pytestmark = [pytest.mark.hsm, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Served:
    port: int
    key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _tawqi(env: dict[str, str], *args: str) -> str:
    tawqi = shutil.which("tawqi", path=str(Path(sys.executable).parent))
    assert tawqi is not None
    done = subprocess.run([tawqi, *args], env=env, capture_output=True, text=True,
                          timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.fixture
def gunicorn(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Served]:
    env = {**os.environ, **cli_environment(tmp_path, monkeypatch),
           "TAWQI_DATABASE_URL": f"sqlite:///{tmp_path / 'tawqi.db'}",
           "TAWQI_MAX_UPLOAD_MB": "1"}
    env.pop("TAWQI_TEST_DATABASE_URL", None)
    _tawqi(env, "db", "upgrade")
    key = _tawqi(env, "apikeys", "create", "permits platform").strip().splitlines()[-1]
    port = _free_port()
    log = (tmp_path / "gunicorn.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "deploy" / "gunicorn.conf.py"),
         "--bind", f"127.0.0.1:{port}", "--workers", "1", "api.wsgi:app"],
        env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, (tmp_path / "gunicorn.log").read_text()
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                assert time.monotonic() < deadline, (tmp_path / "gunicorn.log").read_text()
                time.sleep(0.2)
        yield Served(port, key)
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(30)
        log.close()


def _chunked(served: Served, content_type: str, body: bytes) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", served.port, timeout=120)
    try:
        chunks = (body[i:i + 65536] for i in range(0, len(body), 65536))
        try:
            connection.request("POST", "/v1/verify", body=chunks, encode_chunked=True,
                               headers={**served.headers, "Content-Type": content_type})
        except (BrokenPipeError, ConnectionResetError):
            # The server may answer 413 and close before the whole body is sent, as a
            # server should; its answer is already in our receive buffer.
            pass
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_chunked_upload_over_the_limit_is_413_under_gunicorn(gunicorn: Served) -> None:
    big = permit_pdf() + b"%" + b"0" * (2 * 1024 * 1024)
    status, body = _chunked(gunicorn, "application/pdf", big)
    assert status == 413, body
    assert b"413" in body or b"large" in body.lower()
    boundary = "tawqi-boundary"
    form = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"document\"; "
            f"filename=\"big.pdf\"\r\nContent-Type: application/pdf\r\n\r\n").encode() \
        + big + f"\r\n--{boundary}--\r\n".encode()
    status, body = _chunked(gunicorn, f"multipart/form-data; boundary={boundary}", form)
    assert status == 413, body
    status, body = _chunked(gunicorn, "application/json",
                            b'{"document": "' + base64.b64encode(big) + b'"}')
    assert status == 413, body
    # under the limit, the same chunked upload reaches the verifier
    status, body = _chunked(gunicorn, "application/pdf", permit_pdf())
    assert status == 200, body
    assert b'"signed":false' in body.replace(b" ", b"")

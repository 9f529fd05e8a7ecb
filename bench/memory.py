"""Memory of the long-running processes (issue 16): one API worker, one outbox worker.

Run: ``.venv/bin/python -m bench.memory [--calls 1000] [--notifications 10000]``

The throwaway service of :mod:`bench.sign_hash`, served by gunicorn with the production
settings file and ONE sync worker that is never recycled during the run
(``--max-requests 0``: the production file recycles workers after 2,000 requests, which
would hide growth).

* **API worker**: warm-up (``--warmup`` ``signDoc`` + ``POST /v1/verify`` calls), RSS;
  then ``--calls`` ``signDoc`` calls (B-B, visible stamp; each after its ``sendOTP`` and
  ``authorize``) and ``--calls`` ``POST /v1/verify`` of a B-LT file, RSS again. Goal:
  growth after warm-up <= 10 %.
* **Outbox worker**: ``--notifications`` SMS queued in the outbox (a template without a
  secret), then ``tawqi worker`` (console backends) started and left to send them all;
  its RSS once the first messages are out and once the outbox is empty.

RSS is ``VmRSS`` of ``/proc/<pid>/status``. Every call is bounded (:mod:`bench.bounded`).
The LAST line is ``api_worker_growth=<x>`` (RSS after / RSS after warm-up - 1).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests as http

from bench import bounded, end_token_server
from bench.sign_hash import ROOT, Server, Service, authorize, prepare, runtime_for
from bench.sign_pdf import permit


def rss_kib(pid: int) -> int:
    """Resident set size of ``pid`` in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found.extend(int(p) for p in text)
    return found


def gunicorn_worker(server: Server) -> int:
    """The pid of the one gunicorn worker (the master's child that runs gunicorn)."""
    for pid in children(server.process.pid):
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        if b"gunicorn" in cmdline:
            return pid
    raise RuntimeError("no gunicorn worker found")


class Client:
    def __init__(self, service: Service, server: Server) -> None:
        self.service = service
        self.server = server
        self.runtime = runtime_for(service)
        self.http = http.Session()
        self.headers = {"Authorization": f"Bearer {service.api_key}"}

    def sign(self, document: bytes, level: str, step: str) -> bytes:
        digest = base64.b64encode(hashlib.sha256(document).digest()).decode()
        sad = authorize(self.http, self.server.url, self.service, self.runtime,
                        {"documentDigests": [digest]})
        answer = bounded.post(self.http, self.server.url + "/csc/v2/signatures/signDoc",
                              step, headers=self.headers,
                              data={"credentialID": self.service.serial, "SAD": sad,
                                    "conformance_level": f"AdES-{level}"},
                              files={"document": ("permit.pdf", document,
                                                  "application/pdf")})
        answer.raise_for_status()
        return bytes(answer.content)

    def verify(self, document: bytes, step: str) -> None:
        answer = bounded.post(self.http, self.server.url + "/v1/verify", step,
                              data=document, headers={**self.headers,
                                                      "Content-Type": "application/pdf"})
        answer.raise_for_status()
        if answer.json()["indication"] != "TOTAL-PASSED":
            raise RuntimeError("the verification did not pass")

    def close(self) -> None:
        self.runtime.close()


def api_worker(service: Service, calls: int, warmup: int) -> tuple[int, int]:
    server = Server(service, extra_env={"GUNICORN_CMD_ARGS": "--max-requests 0"})
    try:
        client = Client(service, server)
        try:
            document = permit()
            signed = client.sign(document, "B-LT", "signDoc B-LT (the file to verify)")
            pid = gunicorn_worker(server)
            for index in range(warmup):
                client.sign(document, "B-B", f"signDoc warm-up {index}")
                client.verify(signed, f"verify warm-up {index}")
            warm = rss_kib(pid)
            for index in range(calls):
                client.sign(document, "B-B", f"signDoc {index}")
                client.verify(signed, f"verify {index}")
            after = rss_kib(pid)
            if gunicorn_worker(server) != pid:
                raise RuntimeError("the gunicorn worker was replaced during the run")
            return warm, after
        finally:
            client.close()
    finally:
        server.stop()


def queue_notifications(service: Service, count: int) -> None:
    from delivery import outbox
    from delivery.messages import TEMPLATES

    runtime = runtime_for(service)
    try:
        template = TEMPLATES["expiry.holder"]
        params = {name: "1" for name in template.fields()}
        with runtime.unit_of_work() as session:
            for index in range(count):
                outbox.enqueue(session, runtime.clock, outbox.Notification(
                    channel="sms", recipient=f"+2126{index:08d}", template=template.name,
                    dedupe_key=f"bench-memory-{index}", params=params))
    finally:
        runtime.close()


def pending(service: Service) -> int:
    from sqlalchemy import func, select

    from delivery.models import OutboxMessage

    runtime = runtime_for(service)
    try:
        with runtime.unit_of_work() as session:
            return int(session.scalar(select(func.count()).select_from(OutboxMessage).where(
                OutboxMessage.status.in_(("pending", "sending")))) or 0)
    finally:
        runtime.close()


def pending_dead(service: Service) -> int:
    from sqlalchemy import func, select

    from delivery.models import OutboxMessage

    runtime = runtime_for(service)
    try:
        with runtime.unit_of_work() as session:
            return int(session.scalar(select(func.count()).select_from(OutboxMessage).where(
                OutboxMessage.status == "dead")) or 0)
    finally:
        runtime.close()


def outbox_worker(service: Service, count: int, seconds: float) -> tuple[int, int]:
    with bounded.step(f"queueing {count} notifications", seconds):
        queue_notifications(service, count)
    tawqi = str(Path(sys.executable).with_name("tawqi"))
    env = {**os.environ, **service.env, "PYTHONPATH": str(ROOT),
           "TAWQI_LOG_LEVEL": "WARNING", "TAWQI_SMS_BACKEND": "console",
           "TAWQI_EMAIL_BACKEND": "console"}
    process = subprocess.Popen([tawqi, "worker", "--idle", "0.2"], cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL)
    try:
        with bounded.step(f"outbox worker sending {count} notifications", seconds):
            first = 0
            while True:
                left = pending(service)
                if process.poll() is not None:
                    raise RuntimeError(f"tawqi worker exited ({process.returncode})")
                if not first and left < count:
                    first = rss_kib(process.pid)
                if left == 0:
                    break
                time.sleep(0.5)
        drained = rss_kib(process.pid)
        if pending_dead(service):
            raise RuntimeError("some notifications went dead")
        return first, drained
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--notifications", type=int, default=10_000)
    parser.add_argument("--outbox-seconds", type=float, default=1800)
    args = parser.parse_args(argv)
    directory = Path(tempfile.mkdtemp(prefix="tawqi-bench-memory-"))
    try:
        service = prepare(directory)
        warm, after = api_worker(service, args.calls, args.warmup)
        growth = after / warm - 1
        print(f"API worker (1 gunicorn sync worker, not recycled): RSS {warm / 1024:.1f} MiB "
              f"after warm-up ({args.warmup} signDoc + {args.warmup} verify), "
              f"{after / 1024:.1f} MiB after {args.calls} signDoc + {args.calls} verify "
              f"({100 * growth:+.1f} %, goal <= +10 %)", flush=True)
        first, drained = outbox_worker(service, args.notifications, args.outbox_seconds)
        print(f"outbox worker (tawqi worker, console backends): RSS {first / 1024:.1f} MiB "
              f"once sending, {drained / 1024:.1f} MiB after {args.notifications:,} "
              f"notifications ({100 * (drained / first - 1):+.1f} %)")
        print(f"api_worker_growth={growth:.3f}")
    except bounded.StepOverran as exc:
        raise SystemExit(str(exc)) from exc
    finally:
        end_token_server(directory)
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()

"""OCSP responder throughput: ours vs ``openssl ocsp -port``, per server core.

Run: ``.venv/bin/python -m bench.ocsp [--seconds 5] [--certs 200] [--connections 16]``

What it does, in a temporary directory, on this machine only (127.0.0.1):

1. A CA on SoftHSM2 (EC P-256), ``--certs`` holder certificates (keys on a token), one in
   ten revoked; our responses pre-signed.
2. The same request mix for every server: RFC 5019 GETs (SHA-1 CertID, no nonce) for every
   certificate, good and revoked, shuffled once.
3. Servers, each pinned to CPU 0 (``taskset``): ``openssl ocsp -index`` with a software
   EC P-256 responder key certified by our issuing CA (it signs every response and closes
   the connection after each); our Flask application under gunicorn
   (one gthread worker, keep-alive); nginx serving ``tawqi ocsp export`` files, if nginx is
   installed.
4. One client, this process, pinned to CPU 1: ``--connections`` sockets multiplexed with
   epoll, keep-alive when the server allows it, reconnecting when it closes. Every answer is
   checked for status 200 and its length; a sample is parsed and its status compared with
   the registry before timing.
5. The servers run side by side and are measured in turn, ``--seconds`` each in five
   slices (each slice after half a second of warm-up), so that a load which changes during
   the run weighs on each alike.

The last line is ``ratio_vs_openssl=<nginx serving our export / openssl>`` (the lean
hand-written responder ``tawqi ocsp serve`` was retired in favour of nginx, issue 15).
"""

from __future__ import annotations

import argparse
import base64
import os
import random
import selectors
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench import end_token_server

SERVER_CPU = "0"
CLIENT_CPU = 1


@dataclass
class World:
    work: Path
    db_url: str
    conf: Path
    requests: list[bytes]  # DER OCSP requests
    expected: dict[int, str]  # serial -> good | revoked
    index_txt: Path
    issuing_pem: Path
    responder_pem: Path
    responder_key: Path
    static_dir: Path


def build_world(work: Path, certs: int) -> World:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from core.clock import SystemClock
    from core.db import make_engine, make_session_factory, transaction
    from core.migrate import upgrade
    from hsm import InMemoryPinAttemptStore, TokenLibrary, default_module_path, generate_pin
    from hsm.softhsm import use_config, write_softhsm_config
    from pki import ca, issuance, lifecycle, ocsp
    from pki.authority import random_serial
    from pki.profiles import (
        DOCUMENTATION_POLICY_OID,
        HolderIdentity,
        Profile,
        ca_name,
        ocsp_builder,
    )

    conf = write_softhsm_config(work / "softhsm")
    module = default_module_path()
    use_config(conf, module)
    library = TokenLibrary(module, attempts=InMemoryPinAttemptStore())
    db_url = f"sqlite:///{work / 'bench.db'}"
    engine = make_engine(db_url)
    upgrade(engine)
    sessions = make_session_factory(engine)
    clock = SystemClock()
    profile = Profile(public_url="http://pki.tawqi.ma",
                      policy_oid=DOCUMENTATION_POLICY_OID)
    pin = generate_pin(8)
    with transaction(sessions) as session:
        ca.init_ca(session, clock, library, profile, root_token="bench-root",
                   ca_token="bench-ca", so_pin="bench-so", pin=pin, root_pin=pin,
                   key_type="EC-P256", actor="bench")
    holder_pin = generate_pin(8)
    library.init_token("bench-holders", "bench-so", holder_pin)
    expected: dict[int, str] = {}
    with transaction(sessions) as session:
        authority = ca.load_authority(session, library, profile, pin=pin)
        for i in range(certs):
            holder = HolderIdentity(cin=f"BE{i:06d}", given_name="Bench", surname=f"H{i}",
                                    title="Président", organization="Commune de Bench")
            issued = issuance.issue_holder_certificate(
                session, clock, authority, library, token_label="bench-holders",
                token_pin=holder_pin, holder=holder, actor="bench")
            expected[int(issued.serial, 16)] = "good"
        for n, serial in enumerate(sorted(expected)):
            if n % 10 == 0:
                lifecycle.revoke(session, clock, authority, format(serial, "x"),
                                 "affiliationChanged", actor="bench")
                expected[serial] = "revoked"
        name_hash, key_hash = authority.name_hash, authority.key_hash
        issuing = authority.certificate

        # openssl's responder: its own software key, certified by our issuing CA.
        responder_key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.now(UTC)
        responder_cert = ocsp_builder(
            profile, subject=ca_name(profile, "openssl bench responder"),
            public_key=responder_key.public_key(), serial=random_serial(), not_before=now,
            not_after=now + timedelta(days=2), issuer=issuing, issuer_id=authority.id,
        ).sign(authority.signer.key, authority.signer.hash_algorithm)
        rows = lifecycle.list_certificates(session, profile="holder", limit=certs + 10)
    pem = serialization.Encoding.PEM
    (work / "issuing.pem").write_bytes(issuing.public_bytes(pem))
    (work / "responder.pem").write_bytes(responder_cert.public_bytes(pem))
    (work / "responder.key").write_bytes(responder_key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    lines = []
    for row in rows:
        expiry = row.not_after.strftime("%y%m%d%H%M%SZ")
        revoked = row.revoked_at.strftime("%y%m%d%H%M%SZ") + ",affiliationChanged" \
            if row.revoked_at else ""
        lines.append(f"{'R' if row.revoked_at else 'V'}\t{expiry}\t{revoked}\t"
                     f"{row.serial.upper().zfill(40)}\tunknown\t/CN={row.cin}")
    (work / "index.txt").write_text("\n".join(lines) + "\n", encoding="ascii")
    (work / "index.txt.attr").write_text("unique_subject = no\n", encoding="ascii")
    requests = [ocsp.canonical_request(name_hash, key_hash, serial) for serial in expected]
    random.Random(5019).shuffle(requests)
    static = work / "static"
    with transaction(sessions) as session:
        ocsp.export_static(session, clock, static)
    library.close()
    engine.dispose()
    return World(work, db_url, conf, requests, expected, work / "index.txt",
                 work / "issuing.pem", work / "responder.pem", work / "responder.key", static)


# ------------------------------------------------------------------------------ servers

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, process: subprocess.Popen[bytes], probe: bytes,
              timeout: float = 120, step: str = "server start") -> None:
    """Wait until the server answers ``probe`` (a bare connect would wedge openssl's
    one-connection-at-a-time responder on a socket that never sends a request)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
                sock.sendall(probe)
                if sock.recv(65536):
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"overran: {step}: nothing answers on port {port} within "
                       f"{timeout:g} s")


def pinned(*command: str) -> list[str]:
    return ["taskset", "-c", SERVER_CPU, *command]


def start_openssl(world: World, port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(pinned(
        "openssl", "ocsp", "-index", str(world.index_txt), "-port", str(port), "-ignore_err",
        "-rsigner", str(world.responder_pem), "-rkey", str(world.responder_key),
        "-CA", str(world.issuing_pem), "-nmin", "60"),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=world.work)


def _env(world: World) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAWQI_")}
    env.update({"TAWQI_DATABASE_URL": world.db_url, "TAWQI_VAR_DIR": str(world.work / "var"),
                "TAWQI_PUBLIC_URL": "http://pki.tawqi.ma", "SOFTHSM2_CONF": str(world.conf),
                "TAWQI_POLICY_OID": "1.3.6.1.4.1.32473.1"})
    return env


def start_gunicorn(world: World, port: int) -> subprocess.Popen[bytes]:
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    return subprocess.Popen(pinned(gunicorn, "-w", "1", "-k", "gthread", "--threads", "8",
                                   "--keep-alive", "30", "-b", f"127.0.0.1:{port}",
                                   "--log-level", "warning", "api.wsgi:app"),
                            env=_env(world), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def start_nginx(world: World, port: int) -> subprocess.Popen[bytes] | None:
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists()
                                      else None)
    if nginx is None:
        return None
    prefix = world.work / "nginx"
    prefix.mkdir(exist_ok=True)
    conf = prefix / "nginx.conf"
    user = "user root;\n" if os.geteuid() == 0 else ""
    conf.write_text(
        f"{user}worker_processes 1;\ndaemon off;\nmaster_process off;\n"
        f"pid {prefix}/nginx.pid;\nerror_log {prefix}/error.log;\n"
        "events { worker_connections 4096; }\n"
        "http {\n  access_log off;\n  merge_slashes off;\n  keepalive_requests 1000000;\n"
        f"  client_body_temp_path {prefix}/body;\n  proxy_temp_path {prefix}/proxy;\n"
        f"  server {{\n    listen 127.0.0.1:{port};\n    root {world.static_dir};\n"
        "    location /ocsp/ {\n      default_type application/ocsp-response;\n"
        "      try_files $uri.der =404;\n    }\n  }\n}\n", encoding="ascii")
    return subprocess.Popen(pinned(nginx, "-p", str(prefix), "-c", str(conf)),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


# ------------------------------------------------------------------------------ client

def http_get(path: str) -> bytes:
    return (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: */*\r\n\r\n").encode("ascii")


def get_requests(world: World, prefix: str = "/ocsp/") -> list[bytes]:
    """The GET for each request; openssl's responder takes the base64 at the root path."""
    return [http_get(prefix + urllib.parse.quote(base64.b64encode(der).decode(), safe=""))
            for der in world.requests]


class _Conn:
    __slots__ = ("buffer", "expect", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""
        self.expect = -1


def _parse(buffer: bytes) -> tuple[int, int, bool, bool] | None:
    """(head length, body length, keep-alive, ok) once the head is complete."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = buffer[:end].lower()
    marker = head.find(b"content-length:")
    stop = head.find(b"\r\n", marker)
    length = int(head[marker + 15: stop if stop > 0 else None]) if marker >= 0 else 0
    keep = not head.startswith(b"http/1.0") and b"connection: close" not in head
    return end + 4, length, keep, head.startswith((b"http/1.1 200", b"http/1.0 200"))


def run_client(port: int, requests: list[bytes], seconds: float, connections: int,
               warmup: float = 0.5) -> tuple[float, int, int]:
    """Requests per second over ``seconds`` (after ``warmup``), answers, errors."""
    selector = selectors.DefaultSelector()
    position = 0
    total = len(requests)

    def open_and_send() -> None:
        nonlocal position
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        sock.send(requests[position % total])
        position += 1
        selector.register(sock, selectors.EVENT_READ, _Conn(sock))

    for _ in range(connections):
        open_and_send()
    start = time.perf_counter()
    t0 = start + warmup
    t1 = t0 + seconds
    done = errors = 0
    while True:
        now = time.perf_counter()
        if now >= t1:
            break
        for key, _events in selector.select(timeout=1.0):
            conn: _Conn = key.data
            try:
                chunk = conn.sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                chunk = b""
            if not chunk:
                selector.unregister(conn.sock)
                conn.sock.close()
                if conn.buffer or conn.expect >= 0:
                    errors += 1
                open_and_send()
                continue
            conn.buffer += chunk
            parsed = _parse(conn.buffer)
            if parsed is None:
                continue
            head, length, keep, ok = parsed
            if len(conn.buffer) < head + length:
                continue
            stamp = time.perf_counter()
            if t0 <= stamp < t1:
                if ok:
                    done += 1
                else:
                    errors += 1
            conn.buffer = conn.buffer[head + length:]
            if keep:
                conn.sock.send(requests[position % total])
                position += 1
            else:
                selector.unregister(conn.sock)
                conn.sock.close()
                open_and_send()
    for key in list(selector.get_map().values()):
        key.fileobj.close()  # type: ignore[union-attr]
    selector.close()
    return done / seconds, done, errors


def check_answers(world: World, port: int, prefix: str, sample: int = 12) -> None:
    """A few answers parsed and compared with the registry before timing."""
    from cryptography.x509 import ocsp as x509_ocsp

    pairs = list(zip(world.requests, get_requests(world, prefix), strict=True))
    for der, request in pairs[:sample]:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(request.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"))
            data = b""
            parsed = None
            while parsed is None or len(data) < parsed[0] + parsed[1]:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
                parsed = _parse(data)
        if parsed is None or not parsed[3]:
            raise RuntimeError(f"bad HTTP answer on port {port}: {data[:80]!r}")
        response = x509_ocsp.load_der_ocsp_response(data[parsed[0]: parsed[0] + parsed[1]])
        serial = x509_ocsp.load_der_ocsp_request(der).serial_number
        status = response.certificate_status.name.lower()
        if status != world.expected[serial]:
            raise RuntimeError(f"port {port}: {serial:x} is {status}, expected "
                               f"{world.expected[serial]}")


def measure_all(world: World, servers: list[tuple[str, object, str]], seconds: float,
                connections: int, slices: int = 5) -> dict[str, float | None]:
    """Responses per second of each server, all started first, then measured in turn in
    ``slices`` slices of ``seconds / slices`` each (so that a load which changes during the
    run weighs on each alike); the answers are checked before timing."""
    running: dict[str, tuple[int, subprocess.Popen[bytes], str]] = {}
    results: dict[str, float | None] = {}
    try:
        for name, start, prefix in servers:
            port = free_port()
            process = start(world, port)  # type: ignore[operator]
            if process is None:
                print(f"{name:<28} skipped (not installed)")
                results[name] = None
                continue
            running[name] = (port, process, prefix)
            wait_port(port, process, get_requests(world, prefix)[0], step=f"{name} start")
            check_answers(world, port, prefix)
        done = dict.fromkeys(running, 0)
        errors = dict.fromkeys(running, 0)
        for _ in range(slices):
            for name, (port, _process, prefix) in running.items():
                _rate, count, failed = run_client(port, get_requests(world, prefix),
                                                  seconds / slices, connections)
                done[name] += count
                errors[name] += failed
    finally:
        for _port, process, _prefix in running.values():
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
    for name in running:
        results[name] = done[name] / seconds
        print(f"{name:<28} {done[name] / seconds:>10,.0f} responses/s  ({done[name]} in "
              f"{seconds:g}s, {errors[name]} errors)", flush=True)
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--certs", type=int, default=200)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args(argv)
    if (os.cpu_count() or 1) < 2:
        print("needs 2 CPUs (server on CPU 0, client on CPU 1)", file=sys.stderr)
        sys.exit(2)
    work = Path(tempfile.mkdtemp(prefix="tawqi-bench-ocsp-"))
    try:
        print(f"setting up: {args.certs} holder certificates (EC P-256, keys on SoftHSM2), "
              "1 in 10 revoked ...", flush=True)
        world = build_world(work, args.certs)
        os.sched_setaffinity(0, {CLIENT_CPU})
        print(f"request mix: {len(world.requests)} RFC 5019 GETs, "
              f"{sum(v == 'revoked' for v in world.expected.values())} revoked; "
              f"server on CPU {SERVER_CPU}, client on CPU {CLIENT_CPU}, "
              f"{args.connections} connections, {args.seconds:g}s each in 5 slices, the servers "
              "in turn; load average "
              f"{' '.join(Path('/proc/loadavg').read_text().split()[:3])}", flush=True)
        results = measure_all(world, [("openssl ocsp -index -port", start_openssl, "/"),
                                      ("tawqi app (gunicorn, Flask)", start_gunicorn, "/ocsp/"),
                                      ("nginx, exported files", start_nginx, "/ocsp/")],
                              args.seconds, args.connections)
        openssl_rate = results["openssl ocsp -index -port"] or float("nan")
        ours = results["nginx, exported files"] or 0.0
        for name, rate in results.items():
            if rate:
                print(f"  {name:<28} x{rate / openssl_rate:.2f} vs openssl")
        print(f"ratio_vs_openssl={ours / openssl_rate:.2f}")
    finally:
        if args.keep:
            print(f"work directory kept: {work}", file=sys.stderr)
        else:
            end_token_server(work)
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

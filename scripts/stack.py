"""The production topology as processes on 127.0.0.1, without Docker (docker-compose.yml's
services, one process each): ``python scripts/stack.py up|down|status|stop NAME|start NAME``.

- ``pg``: a throwaway PostgreSQL cluster of its own (Debian's binaries; as root it belongs to
  the ``postgres`` user, as tests/pgcluster.py does);
- ``hsm``: the token server (``tawqi hsm serve``) holding SoftHSM2; the API and the workers
  load p11-kit's client module pointed at its socket;
- ``init``: a one-shot idempotent job: migrations, reference data, ``ca init`` and ``delivery
  setup`` when absent, then a first OCSP export;
- ``api1``, ``api2``: gunicorn, each with its own Prometheus multiprocess directory;
- ``nginx``: load balancing the two, serving the RFC 5019 OCSP files from the export directory
  (the API answers what is not there) and caching /ca and /crl briefly;
- ``worker1``, ``worker2``: ``tawqi worker`` (the outbox and the periodic jobs; the OCSP job
  rewrites the export).

Ports are chosen free at start (nginx's with ``--http-port``). Everything lives in the state
directory (``--state``, default var/stack): ``stack.json`` (ports, pids), ``logs/``, the token
store, the export. ``down`` (and ``stop``) end only the pids recorded there, and only if each
pid still is the process started (its start time is recorded beside it).

Configuration is the TAWQI_* environment of the caller, passed on to every process, with
these rules: ``TAWQI_PUBLIC_URL`` must be set (it is written into every certificate); the
secrets come from files only, one per secret in ``--secrets DIR`` (so_pin, service_pin,
root_pin, envelope_token_pin, secret_key; twilio_auth_token and smtp_password when present),
passed as TAWQI_*_FILE; an inline secret variable or an example secret is refused.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
REQUIRED_SECRETS = ("so_pin", "service_pin", "root_pin", "envelope_token_pin", "secret_key")
OPTIONAL_SECRETS = ("twilio_auth_token", "smtp_password", "database_url", "metrics_token")
API_NAMES = ("api1", "api2")
WORKER_NAMES = ("worker1", "worker2")
# Start order; ``down`` ends them in the reverse order.
ORDER = ("pg", "hsm", *API_NAMES, "nginx", *WORKER_NAMES)


class StackError(Exception):
    pass


# ------------------------------------------------------------------------------ helpers

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
    path = found[0] if found else shutil.which(name)
    if not path:
        raise StackError(f"PostgreSQL's {name} is not installed (apt-get install postgresql)")
    return path


def _nginx_bin() -> str:
    path = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx")
                                     else None)
    if not path:
        raise StackError("nginx is not installed (apt-get install nginx-light)")
    return path


def _as_postgres() -> list[str]:
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


def _start_time(pid: int) -> str | None:
    """The process's start time (clock ticks since boot), or None if it is gone or a
    zombie. With the pid it names one process: a reused pid has another start time."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    if fields[0] in ("Z", "X"):
        return None
    return fields[19]


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def _alive(entry: dict[str, Any]) -> bool:
    _reap(entry["pid"])
    return _start_time(entry["pid"]) == entry["start"]


def _wait_http(url: str, timeout: float, *, want: int = 200) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as reply:  # noqa: S310 (http only)
                if reply.status == want:
                    return
                last = str(reply.status)
        except urllib.error.HTTPError as exc:
            last = f"{exc.code}"
        except OSError as exc:
            last = type(exc).__name__
        time.sleep(0.2)
    raise StackError(f"{url} did not answer {want} within {timeout:.0f}s (last: {last})")


# ------------------------------------------------------------------------------ the stack

class Stack:
    def __init__(self, state: Path) -> None:
        self.state = state.absolute()
        self.file = self.state / "stack.json"
        self.data: dict[str, Any] = json.loads(self.file.read_text()) if self.file.exists() \
            else {}

    # -- persistent state
    def save(self) -> None:
        tmp = self.file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=2, sort_keys=True))
        tmp.replace(self.file)

    @property
    def procs(self) -> dict[str, dict[str, Any]]:
        procs: dict[str, dict[str, Any]] = self.data.setdefault("procs", {})
        return procs

    @property
    def ports(self) -> dict[str, int]:
        ports: dict[str, int] = self.data["ports"]
        return ports

    @property
    def env(self) -> dict[str, str]:
        env: dict[str, str] = self.data["env"]
        return env

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ports['nginx']}"

    # -- configuration
    def configure(self, secrets_dir: Path, http_port: int | None, api_workers: int) -> None:
        environ = dict(os.environ)
        if not environ.get("TAWQI_PUBLIC_URL"):
            raise StackError("TAWQI_PUBLIC_URL is not set: it is written into every "
                             "certificate (CRL and OCSP addresses); set the public address")
        for name in (*REQUIRED_SECRETS, *OPTIONAL_SECRETS):
            if f"TAWQI_{name.upper()}" in environ:
                raise StackError(f"TAWQI_{name.upper()} is set inline: secrets come from "
                                 f"files only ({secrets_dir}/{name})")
            environ.pop(f"TAWQI_{name.upper()}_FILE", None)
        examples = {p.read_text().strip() for p in (ROOT / "deploy" / "secrets").glob(
            "*.example")}
        secret_env = {}
        for name in (*REQUIRED_SECRETS, *OPTIONAL_SECRETS):
            path = (secrets_dir / name).absolute()
            if not path.exists():
                if name in REQUIRED_SECRETS:
                    raise StackError(f"missing secret file {path}")
                continue
            value = path.read_text().strip()
            if path.name.endswith(".example") or value in examples or "change-me" in value:
                raise StackError(f"{path} holds an example secret: make a real one")
            if len(value) < 6:
                raise StackError(f"{path} is too short for a secret")
            secret_env[f"TAWQI_{name.upper()}_FILE"] = str(path)
        self.state.mkdir(parents=True, exist_ok=True)
        self.state.chmod(0o755)  # nginx's workers (nobody) read the export below
        for sub in ("logs", "var", "export", "softhsm/tokens", "hsm", "nginx/tmp", "prom"):
            (self.state / sub).mkdir(parents=True, exist_ok=True)
        (self.state / "softhsm").chmod(0o700)
        conf = self.state / "softhsm" / "softhsm2.conf"
        conf.write_text(f"directories.tokendir = {self.state / 'softhsm' / 'tokens'}\n"
                        "objectstore.backend = file\nlog.level = ERROR\n"
                        "slots.removable = false\n")
        ports = {"pg": free_port(), "nginx": http_port or free_port()}
        for name in API_NAMES:
            ports[name] = free_port()
        # The cluster lives in a directory of its own that the postgres user can reach.
        pg_dir = Path(tempfile.mkdtemp(prefix="tawqi-stack-pg-"))
        socket_path = self.state / "hsm" / "pkcs11.sock"
        env = {k: v for k, v in environ.items() if k != "SOFTHSM2_CONF"}
        env.update(secret_env)
        env.update({
            "PATH": f"{BIN}{os.pathsep}{environ.get('PATH', '/usr/bin:/bin')}",
            "TAWQI_VAR_DIR": str(self.state / "var"),
            # Only the token server reads the token files (SOFTHSM2_CONF, set in
            # _start_hsm): the API, the workers and the init job reach them through it.
            "TAWQI_PKCS11_SERVER": str(socket_path),
            "TAWQI_OCSP_EXPORT_DIR": str(self.state / "export"),
            "TAWQI_TRUSTED_PROXIES": "1",
        })
        env.setdefault("TAWQI_LOG_FORMAT", "json")
        if "TAWQI_DATABASE_URL_FILE" not in env:
            env["TAWQI_DATABASE_URL"] = \
                f"postgresql+psycopg://postgres@127.0.0.1:{ports['pg']}/tawqi"
        self.data = {"ports": ports, "env": env, "pg_dir": str(pg_dir),
                     "api_workers": api_workers, "procs": {}}
        self.save()

    # -- processes
    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        log = open(self.state / "logs" / f"{name}.log", "ab")
        try:
            proc = subprocess.Popen(argv, cwd=ROOT, env=env or self.env, stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        finally:
            log.close()
        time.sleep(0.05)
        start = _start_time(proc.pid)
        if start is None:
            raise StackError(f"{name} exited at once; see {self.state}/logs/{name}.log")
        self.procs[name] = {"pid": proc.pid, "start": start}
        self.save()

    def _run(self, name: str, argv: list[str], *, check: bool = True) -> int:
        with open(self.state / "logs" / f"{name}.log", "ab") as log:
            done = subprocess.run(argv, cwd=ROOT, env=self.env, stdin=subprocess.DEVNULL,
                                  stdout=log, stderr=subprocess.STDOUT, timeout=600)
        if check and done.returncode:
            raise StackError(f"{' '.join(argv[:3])} failed; see {self.state}/logs/{name}.log")
        return done.returncode

    def start(self, name: str) -> None:
        if name in self.procs and _alive(self.procs[name]):
            return
        getattr(self, f"_start_{name.rstrip('12')}")(name)

    def _start_pg(self, name: str) -> None:
        pg_dir = Path(self.data["pg_dir"])
        data = pg_dir / "data"
        if os.geteuid() == 0:
            shutil.chown(pg_dir, "postgres", "postgres")
        if not data.exists():
            subprocess.run([*_as_postgres(), _pg_bin("initdb"), "-D", str(data), "-A", "trust",
                            "-U", "postgres", "-E", "UTF8", "--no-sync"], check=True,
                           capture_output=True)
        options = (f"-p {self.ports['pg']} -k {pg_dir} -c listen_addresses=127.0.0.1 "
                   "-c max_connections=200")
        subprocess.run([*_as_postgres(), _pg_bin("pg_ctl"), "-D", str(data), "-o", options,
                        "-l", str(pg_dir / "log"), "-w", "start"], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
        pid = int((data / "postmaster.pid").read_text().split()[0])
        self.procs["pg"] = {"pid": pid, "start": _start_time(pid)}
        self.save()
        if "TAWQI_DATABASE_URL" in self.env:
            exists = subprocess.run(
                [*_as_postgres(), _pg_bin("psql"), "-h", "127.0.0.1", "-p",
                 str(self.ports["pg"]), "-U", "postgres", "-tAc",
                 "SELECT 1 FROM pg_database WHERE datname = 'tawqi'"],
                capture_output=True, text=True, check=True).stdout.strip()
            if exists != "1":
                subprocess.run([*_as_postgres(), _pg_bin("createdb"), "-h", "127.0.0.1", "-p",
                                str(self.ports["pg"]), "-U", "postgres", "tawqi"], check=True,
                               capture_output=True)

    def _start_hsm(self, name: str) -> None:
        sock = self.state / "hsm" / "pkcs11.sock"
        conf = self.state / "softhsm" / "softhsm2.conf"
        self._spawn(name, [str(BIN / "tawqi"), "hsm", "serve", "--socket", str(sock)],
                    env={**self.env, "SOFTHSM2_CONF": str(conf)})
        deadline = time.monotonic() + 30
        while not sock.exists():
            if time.monotonic() > deadline or not _alive(self.procs[name]):
                raise StackError(f"the token server did not start; see {self.state}/logs/"
                                 "hsm.log")
            time.sleep(0.1)

    def init(self) -> None:
        """The one-shot job: idempotent, safe to run again on a running stack."""
        tawqi = str(BIN / "tawqi")
        self._run("init", [tawqi, "db", "upgrade"])
        self._run("init", [tawqi, "refdata", "load"])
        if self._run("init", [tawqi, "ca", "show", "--pem", "root"], check=False) != 0:
            self._run("init", [tawqi, "ca", "init"])
        self._run("init", [tawqi, "delivery", "setup"])
        self._run("init", [tawqi, "ocsp", "export", str(self.state / "export")])

    def _start_api(self, name: str) -> None:
        prom = self.state / "prom" / name
        shutil.rmtree(prom, ignore_errors=True)
        prom.mkdir(parents=True)
        env = dict(self.env, GUNICORN_BIND=f"127.0.0.1:{self.ports[name]}",
                   GUNICORN_WORKERS=str(self.data["api_workers"]),
                   PROMETHEUS_MULTIPROC_DIR=str(prom))
        self._spawn(name, [str(BIN / "gunicorn"), "-c", str(ROOT / "deploy" / "gunicorn.conf.py"),
                           "api.wsgi:app"], env)
        _wait_http(f"http://127.0.0.1:{self.ports[name]}/healthz", 60)

    def _start_nginx(self, name: str) -> None:
        conf = self.state / "nginx" / "nginx.conf"
        conf.write_text(nginx_conf(self))
        self._spawn(name, [_nginx_bin(), "-p", str(self.state / "nginx"), "-c", str(conf),
                           "-e", str(self.state / "logs" / "nginx-error.log")])
        _wait_http(f"{self.url}/healthz", 30)

    def _start_worker(self, name: str) -> None:
        self._spawn(name, [str(BIN / "tawqi"), "worker"])

    def stop(self, name: str, sig: int = signal.SIGTERM) -> None:
        if name == "pg":
            data = Path(self.data["pg_dir"]) / "data"
            if data.exists():
                subprocess.run([*_as_postgres(), _pg_bin("pg_ctl"), "-D", str(data), "-m",
                                "fast", "-w", "stop"], capture_output=True, check=False,
                               timeout=120)
            return
        entry = self.procs.get(name)
        if entry is None or not _alive(entry):
            return
        os.kill(entry["pid"], sig)
        deadline = time.monotonic() + 20
        while _alive(entry):
            if time.monotonic() > deadline:
                os.kill(entry["pid"], signal.SIGKILL)
                deadline = time.monotonic() + 10
            time.sleep(0.05)

    # -- the commands
    def up(self) -> None:
        try:
            for name in ORDER:
                if name == API_NAMES[0]:
                    self.init()
                self.start(name)
        except BaseException:
            self.down()
            raise

    def down(self) -> None:
        for name in reversed(ORDER):
            if name in self.procs:
                self.stop(name)
        pg_dir = self.data.get("pg_dir")
        if pg_dir:
            shutil.rmtree(pg_dir, ignore_errors=True)
        self.data["procs"] = {}
        if self.file.exists():
            self.save()

    def status(self) -> dict[str, Any]:
        report: dict[str, Any] = {name: ("up" if name in self.procs and _alive(self.procs[name])
                                         else "down") for name in ORDER}
        if self.data.get("ports"):
            report["url"] = self.url
            try:
                with urllib.request.urlopen(f"{self.url}/readyz",  # noqa: S310 (http only)
                                            timeout=10) as reply:
                    report["readyz"] = reply.status
            except urllib.error.HTTPError as exc:
                report["readyz"] = exc.code
            except OSError:
                report["readyz"] = None
        return report


def nginx_conf(stack: Stack) -> str:
    export = stack.state / "export"
    tmp = stack.state / "nginx" / "tmp"
    upstream = "\n".join(f"        server 127.0.0.1:{stack.ports[n]} max_fails=1 "
                         "fail_timeout=5s;" for n in API_NAMES)
    user = "user nobody nogroup;\n" if os.geteuid() == 0 else ""
    return f"""# Written by scripts/stack.py; the same roles as deploy/nginx.conf.
{user}worker_processes 1;
pid {stack.state / 'nginx' / 'nginx.pid'};
daemon off;
error_log {stack.state / 'logs' / 'nginx-error.log'} warn;
events {{ worker_connections 512; }}
http {{
    access_log {stack.state / 'logs' / 'nginx-access.log'};
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    proxy_cache_path {tmp}/cache levels=1 keys_zone=pki:1m max_size=16m inactive=60s;
    client_max_body_size 25m;
    merge_slashes off;
    upstream api {{
{upstream}
        keepalive 8;
    }}
    server {{
        listen 127.0.0.1:{stack.ports['nginx']};
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host $http_host;
        proxy_set_header X-Forwarded-For $remote_addr;
        proxy_set_header X-Forwarded-Proto $scheme;
        # A replica that dies mid-request: an idempotent request goes to the other.
        proxy_next_upstream error timeout http_502;
        proxy_read_timeout 90s;
        # RFC 5019: GET /ocsp/<base64 request> is a pre-signed file of the export; what is
        # not there (unknown serials, POST) is answered by the API.
        location /ocsp/ {{
            root {export};
            default_type application/ocsp-response;
            add_header Cache-Control "max-age=60, public";
            try_files $uri.der @api;
        }}
        # CA certificates and CRLs: public, the same for everyone, cached briefly.
        location ~ ^/(ca|crl)/ {{
            proxy_cache pki;
            proxy_cache_valid 200 10s;
            proxy_pass http://api;
        }}
        # Metrics are scraped from each replica (with TAWQI_METRICS_TOKEN), never here.
        location = /metrics {{
            return 403;
        }}
        location / {{
            proxy_pass http://api;
        }}
        location @api {{
            proxy_pass http://api;
        }}
    }}
}}
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["up", "down", "status", "stop", "start", "init"])
    parser.add_argument("name", nargs="?", choices=ORDER)
    parser.add_argument("--state", type=Path, default=ROOT / "var" / "stack")
    parser.add_argument("--secrets", type=Path, default=ROOT / "var" / "stack-secrets")
    parser.add_argument("--http-port", type=int, default=None)
    parser.add_argument("--api-workers", type=int, default=2)
    parser.add_argument("--signal", default="TERM", choices=["TERM", "KILL"])
    args = parser.parse_args(argv)
    stack = Stack(args.state)
    try:
        if args.command == "up":
            if stack.procs and any(_alive(e) for e in stack.procs.values()):
                raise StackError(f"a stack already runs from {stack.state}: down it first")
            stack.configure(args.secrets, args.http_port, args.api_workers)
            stack.up()
            print(json.dumps({"url": stack.url, "state": str(stack.state)}))
        elif args.command == "down":
            stack.down()
        elif args.command == "status":
            report = stack.status()
            print(json.dumps(report, indent=2))
            return 0 if report.get("readyz") == 200 else 1
        elif args.command == "init":
            stack.init()
        else:
            if not args.name:
                raise StackError(f"{args.command} needs a component: {', '.join(ORDER)}")
            if args.command == "stop":
                stack.stop(args.name, getattr(signal, f"SIG{args.signal}"))
            else:
                stack.start(args.name)
    except (StackError, subprocess.CalledProcessError) as exc:
        print(f"stack: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Bounded load test: many clients on loopback running the real mix for a fixed time, then
checks that no quota was exceeded, no notice was lost or duplicated and the audit chain holds.

Run: ``.venv/bin/python -m bench.load [--seconds 30] [--clients 16] [--alone-seconds 5]``

The throwaway service of :mod:`bench.sign_hash` (SQLite under ``/tmp``, or with ``--postgres
URL`` a fresh PostgreSQL database dropped afterwards; SoftHSM2 tokens, the
CA, a hosted holder whose PIN was changed, a platform API key), here served by gunicorn with
the production settings file and TWO workers, both reaching one token state through the token
server (``TAWQI_PKCS11_SERVER=auto``), plus one outbox worker process (``tawqi worker``)
sending SMS to a local stand-in of Twilio's Messages API (the real Twilio SDK) and email to
aiosmtpd. Both stand-ins are those of ``tests/delivery/conftest.py``.

The clients are threads, each with one role (assigned in turn):

* ``requests``: a contact of the province registers a holder of one of ``--communes`` rural
  communes and asks for a hosted certificate (quota-bound: the communes run out, and the
  refusal ``409 quota-exhausted`` is an expected answer); an operator approves, personalises
  and activates each accepted request (which sends the PIN by SMS and email);
* ``signhash``: the platform's ``sendOTP`` (the code read back from the Twilio stand-in),
  ``authorize`` with PIN and code, then ``signatures/signHash`` of ``--batch`` hashes;
* ``verify``: ``POST /v1/verify`` of a B-LT PDF signed through ``signDoc`` at set-up;
* ``ocsp``: OCSP GET and POST (RFC 5019 requests) for the certificates issued so far.

Before the mix, the signhash clients alone run for ``--alone-seconds``. Each operation is
reported with its count, throughput, p50/p99 latency and its answers by status; an answer that
is neither a success nor an expected refusal is an error. Every HTTP call has a timeout, and a
call that overruns is reported naming its step.

Afterwards, once the outbox is drained: every quota ledger row has ``reserved + consumed <=
allotted + extra``; every message queued during the run was sent, and the Twilio and SMTP
stand-ins received each exactly once (by the SID and Message-ID the outbox recorded) and
nothing else; no dedupe key appears twice; ``tawqi audit verify`` exits 0. The process exits 1
if a check fails. It ends only the processes it started (gunicorn, the outbox worker, the token
server under its own directory), by pid.

The LAST line is ``signhash_under_mix_vs_alone=<x>``: the signHash call rate (hashes per
second of one call, from its p50 latency) under the mix divided by the same rate alone.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import itertools
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests as http

from bench import end_token_server
from bench.sign_hash import PYTHON, SHA256, Server, Service, prepare, runtime_for

PROVINCE = "01.051"  # Al Hoceima, where prepare() designated the contact
#: Rural communes (< 20,000 people: 3 certificates a year); prepare() used one in the first.
COMMUNES = ("01.051.03.01", "01.051.03.03", "01.051.03.05", "01.051.03.07", "01.051.07.03")
ROLES = ("requests", "signhash", "verify", "ocsp")
PASSWORD = "load-test-" + secrets.token_hex(8)
EC_SIGN = "1.2.840.10045.4.3.2"
#: Refusals that are part of normal business under this mix, per operation.
EXPECTED = {"request.submit": {"409 quota-exhausted"}, "sms.code": {"received"}}
#: Seconds each kind of call may take before it counts as overrun (a loaded 2-core machine).
TIMEOUTS = {"verify": 60.0, "request.personalise": 60.0, "csc.signHash": 60.0,
            "pdf.signDoc": 120.0}
DEFAULT_TIMEOUT = 30.0


class StepOverran(Exception):
    """A call or a wait took longer than its bound; the message names the step."""


# ------------------------------------------------------------------------------- stats


@dataclass
class Op:
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    errors: int = 0


class Stats:
    """Latencies and answers per operation, shared by the client threads."""

    def __init__(self) -> None:
        self.ops: dict[str, Op] = defaultdict(Op)
        self.overruns: list[str] = []
        self.failures: list[str] = []
        self.lock = threading.Lock()

    def record(self, name: str, seconds: float, status: str, *, error: bool) -> None:
        with self.lock:
            op = self.ops[name]
            op.latencies.append(seconds)
            op.statuses[status] += 1
            op.errors += int(error)

    def overran(self, message: str) -> None:
        with self.lock:
            self.overruns.append(message)

    def failed(self, message: str) -> None:
        """Keep the first few failed answers, with their request ids (for the logs)."""
        with self.lock:
            if len(self.failures) < 20:
                self.failures.append(message)

    def error_count(self) -> int:
        with self.lock:
            return sum(op.errors for op in self.ops.values())


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def report_lines(stats: Stats, seconds: float) -> list[str]:
    lines = [f"{'operation':<20} {'count':>6} {'per s':>7} {'p50 ms':>8} {'p99 ms':>8}  "
             "answers (errors marked !)"]
    for name in sorted(stats.ops):
        op = stats.ops[name]
        answers = ", ".join(
            f"{status}{'!' if not ok_status(name, status) else ''}: {count}"
            for status, count in sorted(op.statuses.items()))
        lines.append(f"{name:<20} {len(op.latencies):>6} {len(op.latencies) / seconds:>7.1f} "
                     f"{1000 * percentile(op.latencies, 0.5):>8.1f} "
                     f"{1000 * percentile(op.latencies, 0.99):>8.1f}  {answers}")
    return lines


def ok_status(name: str, status: str) -> bool:
    return status.startswith("2") or status in EXPECTED.get(name, set())


# ------------------------------------------------------------------------------ client


class Client:
    """One keep-alive HTTP session that times, classifies and bounds each call."""

    def __init__(self, base_url: str, stats: Stats, token: str = "") -> None:
        self.base_url = base_url
        self.stats = stats
        self.session = http.Session()
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    def call(self, step: str, method: str, path: str, **kwargs: Any) -> http.Response | None:
        """The answer if it was a success or an expected refusal, else None (counted as an
        error). A timeout is counted as an error named after ``step``."""
        timeout = TIMEOUTS.get(step, DEFAULT_TIMEOUT)
        headers = {**self.headers, **kwargs.pop("headers", {})}
        start = time.perf_counter()
        try:
            answer = self.session.request(method, self.base_url + path, headers=headers,
                                          timeout=timeout, **kwargs)
        except http.Timeout:
            self.stats.record(step, time.perf_counter() - start, "timeout", error=True)
            self.stats.overran(f"{step}: no answer within {timeout:g} s")
            return None
        except http.ConnectionError as exc:
            self.stats.record(step, time.perf_counter() - start, "connection-error",
                              error=True)
            self.stats.overran(f"{step}: connection failed ({type(exc).__name__})")
            return None
        elapsed = time.perf_counter() - start
        status = str(answer.status_code)
        if answer.headers.get("Content-Type", "").startswith("application/problem+json"):
            status += " " + str(answer.json().get("type", "")).rsplit("/", 1)[-1]
        ok = ok_status(step, status)
        self.stats.record(step, elapsed, status, error=not ok)
        if not ok:
            self.stats.failed(f"{step}: {status} (request id "
                              f"{answer.headers.get('X-Request-Id', '?')})")
        return answer if ok else None

    def check(self, step: str, elapsed: float, problem: str) -> None:
        """Count an answer that came back 2xx but was wrong (e.g. an OCSP status)."""
        self.stats.record(step + ".content", elapsed, problem, error=True)


def login(base_url: str, stats: Stats, username: str) -> Client:
    client = Client(base_url, stats)
    answer = client.call("auth.login", "POST", "/v1/auth/login",
                         json={"username": username, "password": PASSWORD})
    if answer is None:
        raise RuntimeError(f"login of {username} failed")
    client.headers = {"Authorization": f"Bearer {answer.json()['token']}"}
    return client


# ----------------------------------------------------------------------------- the world


@dataclass
class Load:
    """Everything the clients share."""

    service: Service
    base_url: str
    stats: Stats
    twilio: Any
    smtp: Any
    batch: int
    communes: tuple[str, ...]
    issuer_hashes: tuple[bytes, bytes]
    serials: list[int]
    pdf: bytes = b""
    stop: threading.Event = field(default_factory=threading.Event)
    credential_lock: threading.Lock = field(default_factory=threading.Lock)
    serial_lock: threading.Lock = field(default_factory=threading.Lock)
    max_calls: int = 1_000_000
    calls: Iterator[int] = field(default_factory=itertools.count)
    #: CIN numbers, unique in the run (next() on a count is atomic under the GIL).
    cins: Iterator[int] = field(default_factory=lambda: itertools.count(100000))

    def rounds(self, start: int = 0) -> Iterator[int]:
        """A client's round numbers: the first always (so every role runs at least once,
        however loaded the machine), then while not stopped and under the bound on rounds
        of all clients together."""
        for turn in itertools.count(start):
            if turn > start and (self.stop.is_set() or next(self.calls) >= self.max_calls):
                return
            yield turn


def wait_for_code(load: Load, seen: int, bound: float = 30.0) -> str:
    """The newest signing code among the messages the Twilio stand-in received for the
    holder after the first ``seen``."""
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        for body in reversed(load.twilio.bodies_to(load.service.mobile)[seen:]):
            found = re.search(r"(\d{6}) : code de signature", body)
            if found:
                return found.group(1)
        time.sleep(0.02)
    raise StepOverran(f"sms.code: the signing code did not reach the Twilio stand-in within "
                      f"{bound:g} s")


def authorize(client: Client, load: Load, body: dict[str, Any]) -> str | None:
    """sendOTP, the code from the Twilio stand-in, authorize. One at a time per credential
    (a new code replaces the previous one), so the lock covers the three steps."""
    serial = load.service.serial
    with load.credential_lock:
        seen = len(load.twilio.bodies_to(load.service.mobile))
        if client.call("csc.sendOTP", "POST", "/csc/v2/credentials/sendOTP",
                       json={"credentialID": serial}) is None:
            return None
        start = time.perf_counter()
        try:
            code = wait_for_code(load, seen)
        except StepOverran as exc:
            client.stats.record("sms.code", time.perf_counter() - start, "timeout", error=True)
            client.stats.overran(str(exc))
            return None
        client.stats.record("sms.code", time.perf_counter() - start, "received", error=False)
        answer = client.call("csc.authorize", "POST", "/csc/v2/credentials/authorize",
                             json={"credentialID": serial, "PIN": load.service.pin,
                                   "OTP": code, **body})
    return None if answer is None else str(answer.json()["SAD"])


def why(load: Load) -> str:
    """The last calls that failed or overran, for a set-up step's error."""
    return "; ".join(load.stats.overruns[-3:] + load.stats.failures[-3:]) or "no detail"


def sign_pdf(load: Load, document: bytes) -> bytes:
    client = Client(load.base_url, load.stats, load.service.api_key)
    digest = base64.b64encode(hashlib.sha256(document).digest()).decode()
    sad = authorize(client, load, {"documentDigests": [digest]})
    if sad is None:
        raise RuntimeError(f"could not authorise the set-up PDF signature: {why(load)}")
    answer = client.call("pdf.signDoc", "POST", "/csc/v2/signatures/signDoc",
                         data={"credentialID": load.service.serial, "SAD": sad,
                               "conformance_level": "AdES-B-LT"},
                         files={"document": ("permit.pdf", document, "application/pdf")})
    if answer is None:
        raise RuntimeError(f"the set-up PDF signature failed: {why(load)}")
    return answer.content


# ------------------------------------------------------------------------------- roles


def requests_role(load: Load, index: int) -> None:
    """A contact asks for certificates in quota-bound communes; an operator approves,
    personalises and activates each one accepted."""
    contact = login(load.base_url, load.stats, "contact")
    operator = login(load.base_url, load.stats, "operator")
    spare: dict[str, int] = {}  # a holder refused for lack of quota asks again next time
    for turn in load.rounds(index):
        commune = load.communes[turn % len(load.communes)]
        holder_id = spare.pop(commune, None)
        if holder_id is None:
            answer = contact.call("holder.register", "POST", "/v1/holders", json={
                "cin": f"LT{next(load.cins)}", "given_name_fr": "Nadia",
                "surname_fr": "Amrani", "given_name_ar": "نادية", "surname_ar": "العمراني",
                "role": "official", "commune_code": commune,
                "mobile": f"+21267{secrets.randbelow(10**7):07d}",
                "email": f"n.{uuid.uuid4().hex[:10]}@commune.example.ma"})
            if answer is None:
                continue
            holder_id = int(answer.json()["id"])
        answer = contact.call("request.submit", "POST", "/v1/requests",
                              json={"holder_id": holder_id, "token_form": "hosted"})
        if answer is None:
            continue
        if answer.status_code == 409:
            spare[commune] = holder_id
            continue
        request_id = answer.json()["id"]
        base = f"/v1/requests/{request_id}"
        if operator.call("request.approve", "POST", base + "/approve",
                         json={"identity_check": "CIN and council minutes"}) is None:
            continue
        if operator.call("request.personalise", "POST", base + "/personalise") is None:
            continue
        activated = operator.call("request.activate", "POST", base + "/activate")
        if activated is not None and activated.json().get("certificate_serial"):
            with load.serial_lock:
                load.serials.append(int(activated.json()["certificate_serial"], 16))


def signhash_role(load: Load, index: int) -> None:
    client = Client(load.base_url, load.stats, load.service.api_key)
    for turn in load.rounds():
        digests = [base64.b64encode(hashlib.sha256(f"{index} {turn} {i}".encode()).digest())
                   .decode() for i in range(load.batch)]
        sad = authorize(client, load, {"hashes": digests, "numSignatures": load.batch})
        if sad is None:
            continue
        start = time.perf_counter()
        answer = client.call("csc.signHash", "POST", "/csc/v2/signatures/signHash", json={
            "credentialID": load.service.serial, "SAD": sad, "hashes": digests,
            "hashAlgorithmOID": SHA256, "signAlgo": EC_SIGN})
        if answer is not None and len(answer.json().get("signatures", [])) != load.batch:
            client.check("csc.signHash", time.perf_counter() - start, "wrong-count")


def verify_role(load: Load, index: int) -> None:
    client = Client(load.base_url, load.stats, load.service.api_key)
    for _ in load.rounds():
        start = time.perf_counter()
        answer = client.call("verify", "POST", "/v1/verify", data=load.pdf,
                             headers={"Content-Type": "application/pdf"})
        if answer is not None and answer.json().get("indication") != "TOTAL-PASSED":
            client.check("verify", time.perf_counter() - start,
                         str(answer.json().get("indication")))


def ocsp_role(load: Load, index: int) -> None:
    from cryptography.x509 import ocsp as x509_ocsp

    from pki.ocsp import canonical_request, get_path

    client = Client(load.base_url, load.stats)
    name_hash, key_hash = load.issuer_hashes
    for turn in load.rounds(index):
        with load.serial_lock:
            serial = load.serials[turn % len(load.serials)]
        der = canonical_request(name_hash, key_hash, serial)
        start = time.perf_counter()
        if turn % 2:
            step = "ocsp.post"
            answer = client.call(step, "POST", "/ocsp", data=der,
                                 headers={"Content-Type": "application/ocsp-request"})
        else:
            step = "ocsp.get"
            answer = client.call(step, "GET", "/ocsp/" + get_path(der))
        if answer is None:
            continue
        parsed = x509_ocsp.load_der_ocsp_response(answer.content)
        if parsed.response_status != x509_ocsp.OCSPResponseStatus.SUCCESSFUL:
            client.check(step, time.perf_counter() - start, parsed.response_status.name)
        elif parsed.certificate_status != x509_ocsp.OCSPCertStatus.GOOD:
            client.check(step, time.perf_counter() - start, parsed.certificate_status.name)


ROLE_FUNCTIONS: dict[str, Callable[[Load, int], None]] = {
    "requests": requests_role, "signhash": signhash_role, "verify": verify_role,
    "ocsp": ocsp_role}


def run_clients(load: Load, roles: list[str], seconds: float) -> float:
    """Run one thread per role for ``seconds``; returns the elapsed time. Threads end on
    their own (each call is bounded by its timeout)."""
    load.stop.clear()
    threads = []

    def guarded(role: str, index: int) -> None:
        try:
            ROLE_FUNCTIONS[role](load, index)
        except Exception as exc:  # a client that dies is an error of the run, not a crash
            load.stats.record(f"{role}.client", 0.0, f"crashed: {type(exc).__name__}: {exc}",
                              error=True)

    start = time.perf_counter()
    for index, role in enumerate(roles):
        thread = threading.Thread(target=guarded, args=(role, index), name=f"{role}-{index}",
                                  daemon=True)
        thread.start()
        threads.append(thread)
    load.stop.wait(seconds)
    load.stop.set()
    bound = max(TIMEOUTS.values()) + 60
    for thread in threads:
        thread.join(bound)
        if thread.is_alive():
            load.stats.overran(f"{thread.name}: still running {bound:g} s after the stop")
    return time.perf_counter() - start


# ------------------------------------------------------------------------------ set-up


def delivery_env(twilio: Any, smtp: Any) -> dict[str, str]:
    return {
        "TAWQI_SMS_BACKEND": "twilio", "TAWQI_TWILIO_ACCOUNT_SID": twilio.account_sid,
        "TAWQI_TWILIO_AUTH_TOKEN": twilio.auth_token, "TAWQI_TWILIO_FROM": "+212500000000",
        "TAWQI_TWILIO_BASE_URL": twilio.base_url,
        "TAWQI_EMAIL_BACKEND": "smtp", "TAWQI_SMTP_HOST": "127.0.0.1",
        "TAWQI_SMTP_PORT": str(smtp.port), "TAWQI_SMTP_FROM": "tawqi@load.example.ma",
        # The relay is aiosmtpd on this machine's loopback.
        "TAWQI_SMTP_STARTTLS": "false", "TAWQI_SMTP_ALLOW_PLAINTEXT": "true",
        # The load's operators log in through the API without enrolling a TOTP.
        "TAWQI_TOTP_REQUIRED_ROLES": "",
    }


def create_users(service: Service) -> None:
    from api import accounts
    from api.app import create_app

    runtime = runtime_for(service)
    try:
        passwords = create_app(rt=runtime).extensions["tawqi.passwords"]
        with runtime.unit_of_work() as session:
            for username, role, province in (("contact", "contact", PROVINCE),
                                             ("operator", "operator", None)):
                accounts.create_user(session, runtime.clock, passwords, username=username,
                                     display_name=username.title(), role=role,
                                     password=PASSWORD, province_code=province,
                                     actor="bench")
    finally:
        runtime.close()


def issuer_and_serials(runtime: Any) -> tuple[tuple[bytes, bytes], list[int]]:
    from pki.models import AuthorityRecord, CertificateRecord

    with runtime.unit_of_work() as session:
        issuing = session.query(AuthorityRecord).filter_by(kind="issuing", active=True).one()
        serials = [int(row.serial, 16) for row in
                   session.query(CertificateRecord).filter_by(profile="holder",
                                                              status="issued")]
        return (bytes.fromhex(issuing.name_hash), bytes.fromhex(issuing.key_hash)), serials


def outbox_mark(runtime: Any) -> int:
    from sqlalchemy import func, select

    from delivery.models import OutboxMessage

    with runtime.unit_of_work() as session:
        return int(session.scalar(select(func.coalesce(func.max(OutboxMessage.id), 0))))


class Worker:
    """``tawqi worker`` with the service's settings, ended by its pid."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.log = log.open("wb")
        self.process = subprocess.Popen(
            [str(PYTHON.parent / "tawqi"), "worker", "--idle", "0.2"], env=env,
            stdout=self.log, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.log.close()


@contextmanager
def standins() -> Iterator[tuple[Any, Any]]:
    from tests.delivery.conftest import SmtpSink, TwilioEndpoint

    twilio = TwilioEndpoint("AC" + uuid.uuid4().hex, secrets.token_hex(16))
    twilio.up()
    smtp = SmtpSink()
    smtp.up()
    try:
        yield twilio, smtp
    finally:
        smtp.down()
        twilio.down()


# ------------------------------------------------------------------------------ checks


def drain(runtime: Any, bound: float) -> bool:
    """Wait until no message is pending or being sent (True), at most ``bound`` seconds."""
    from sqlalchemy import func, select

    from delivery.models import OUTBOX_PENDING, OUTBOX_SENDING, OutboxMessage

    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        with runtime.unit_of_work() as session:
            waiting = session.scalar(select(func.count()).select_from(OutboxMessage).where(
                OutboxMessage.status.in_((OUTBOX_PENDING, OUTBOX_SENDING))))
        if not waiting:
            return True
        time.sleep(0.2)
    return False


def check_quotas(runtime: Any) -> list[str]:
    from sqlalchemy import func

    from delivery.models import CANCELLED, REJECTED, CertificateRequest
    from quotas.models import LedgerEntry

    problems = []
    with runtime.unit_of_work() as session:
        rows = session.query(LedgerEntry).all()
        full = [f"{r.entity_code} ({r.consumed} consumed + {r.reserved} reserved of "
                f"{r.allotted + r.extra})" for r in rows
                if r.reserved + r.consumed == r.allotted + r.extra]
        for row in rows:
            if row.reserved + row.consumed > row.allotted + row.extra:
                problems.append(f"quota exceeded: {row.entity_kind}:{row.entity_code} "
                                f"{row.year} reserved {row.reserved} + consumed "
                                f"{row.consumed} > {row.allotted} + {row.extra}")
        # The same from the requests' side: requests holding or having used a certificate.
        limits = {(f"{r.entity_kind}:{r.entity_code}", r.year): r.allotted + r.extra
                  for r in rows}
        held = session.query(CertificateRequest.entity, CertificateRequest.year,
                             func.count()).filter(
            CertificateRequest.status.notin_((REJECTED, CANCELLED))).group_by(
            CertificateRequest.entity, CertificateRequest.year).all()
        for entity, year, count in held:
            if count > limits.get((entity, year), 0):
                problems.append(f"{count} requests hold {entity} {year}'s quota of "
                                f"{limits.get((entity, year), 0)}")
    print(f"check quotas: {len(rows)} ledger rows, {len(problems)} over their allotment; "
          f"used up: {', '.join(full) or 'none'}")
    return problems


def check_notices(runtime: Any, mark: int, twilio: Any, smtp: Any) -> list[str]:
    from sqlalchemy import func, select

    from delivery.models import OUTBOX_SENT, OutboxMessage

    problems: list[str] = []
    with runtime.unit_of_work() as session:
        rows = session.query(OutboxMessage).filter(OutboxMessage.id > mark).all()
        sent_refs = {row.provider_ref: row.channel for row in
                     session.query(OutboxMessage).filter(OutboxMessage.status == OUTBOX_SENT)}
        doubled = session.execute(select(OutboxMessage.dedupe_key).group_by(
            OutboxMessage.dedupe_key).having(func.count() > 1)).scalars().all()
    problems += [f"dedupe key {key} queued twice" for key in doubled]
    sms_received = Counter(message.sid for message in twilio.messages)
    mail_received = Counter(str(message["Message-ID"]) for message in smtp.messages)
    received = {"sms": sms_received, "email": mail_received}
    for row in rows:
        if row.status != OUTBOX_SENT:
            problems.append(f"outbox {row.id} ({row.template}, {row.channel}) is "
                            f"{row.status}: {row.last_error}")
            continue
        count = received[row.channel].get(row.provider_ref or "", 0)
        if count != 1:
            problems.append(f"outbox {row.id} ({row.template}, {row.channel}) reached the "
                            f"stand-in {count} times")
    for channel, counter in received.items():
        for ref in counter:
            if sent_refs.get(ref) != channel:
                problems.append(f"the {channel} stand-in received {ref}, which no sent "
                                "outbox message names")
    by_channel = Counter(row.channel for row in rows)
    print(f"check notices: {len(rows)} queued during the run ({by_channel['sms']} SMS, "
          f"{by_channel['email']} email); Twilio stand-in received {len(twilio.messages)}, "
          f"SMTP stand-in {len(smtp.messages)}; {len(problems)} problems")
    return problems


def check_audit(env: dict[str, str]) -> list[str]:
    done = subprocess.run([str(PYTHON.parent / "tawqi"), "audit", "verify"], env=env,
                          capture_output=True, text=True, timeout=300)
    print(f"check audit: `tawqi audit verify` exit {done.returncode}: "
          f"{(done.stdout or done.stderr).strip().splitlines()[0:1]}")
    return [] if done.returncode == 0 else [f"tawqi audit verify exited {done.returncode}: "
                                            f"{done.stderr.strip()}"]


# -------------------------------------------------------------------------------- main


def assign_roles(clients: int) -> list[str]:
    return [ROLES[i % len(ROLES)] for i in range(clients)]


def run(args: argparse.Namespace, directory: Path) -> int:
    from bench.sign_pdf import permit

    service = prepare(directory)
    if "TAWQI_DATABASE_URL" in os.environ:
        service.env["TAWQI_DATABASE_URL"] = os.environ["TAWQI_DATABASE_URL"]
    create_users(service)
    with standins() as (twilio, smtp):
        service.env.update(delivery_env(twilio, smtp))
        os.environ.update(service.env)
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
        runtime = runtime_for(service)
        server: Server | None = None
        worker: Worker | None = None
        try:
            mark = outbox_mark(runtime)
            hashes, serials = issuer_and_serials(runtime)
            server = Server(service, workers=args.workers)
            worker = Worker(env, directory / "worker.log")
            load = Load(service, server.url, Stats(), twilio, smtp, args.batch,
                        COMMUNES[:args.communes], hashes, serials, max_calls=args.max_calls)
            load.pdf = sign_pdf(load, permit())  # set-up: its calls are not reported
            roles = assign_roles(args.clients)
            alone = ["signhash"] * roles.count("signhash")

            load.stats = alone_stats = Stats()
            alone_seconds = run_clients(load, alone, args.alone_seconds)
            load.stats = stats = Stats()
            load.calls = itertools.count()
            mix_seconds = run_clients(load, roles, args.seconds)
            drained = drain(runtime, args.drain_seconds)
        finally:
            if worker is not None:
                worker.stop()
            if server is not None:
                server.stop()
        try:
            problems: list[str] = [] if drained else [
                f"outbox.drain: messages still waiting {args.drain_seconds:g} s after the run"]
            print(f"{args.clients} clients ({', '.join(f'{r}: {roles.count(r)}' for r in ROLES)}"
                  f"), {args.workers} gunicorn workers + 1 outbox worker, {mix_seconds:.1f} s "
                  f"(signHash alone first: {alone_seconds:.1f} s); batch {args.batch} hashes")
            print("signHash alone:")
            print("\n".join(report_lines(alone_stats, alone_seconds)))
            print("mix:")
            print("\n".join(report_lines(stats, mix_seconds)))
            for message in alone_stats.overruns + stats.overruns:
                print(f"overran: {message}")
            for message in alone_stats.failures + stats.failures:
                print(f"failed: {message}")
            errors = alone_stats.error_count() + stats.error_count()
            print(f"errors: {errors}")
            if errors:
                problems.append(f"{errors} calls failed")
            problems += check_quotas(runtime)
            problems += check_notices(runtime, mark, twilio, smtp)
            problems += check_audit(env)
        finally:
            runtime.close()
    for problem in problems:
        print(f"FAILED: {problem}")
    print("checks: " + ("all passed" if not problems else f"{len(problems)} failed"))
    alone_p50 = percentile(alone_stats.ops["csc.signHash"].latencies, 0.5)
    mix_p50 = percentile(stats.ops["csc.signHash"].latencies, 0.5)
    ratio = alone_p50 / mix_p50 if mix_p50 else 0.0
    print(f"signhash_under_mix_vs_alone={ratio:.3f}")
    return 1 if problems else 0


@contextmanager
def database(admin_url: str | None) -> Iterator[None]:
    """With ``--postgres``: a fresh PostgreSQL database for this run (TAWQI_DATABASE_URL),
    dropped afterwards; without it, prepare()'s SQLite file under the run's directory."""
    if not admin_url:
        yield
        return
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"tawqi_load_{secrets.token_hex(4)}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    os.environ["TAWQI_DATABASE_URL"] = make_url(admin_url).set(database=name).render_as_string(
        hide_password=False)
    try:
        yield
    finally:
        os.environ.pop("TAWQI_DATABASE_URL", None)
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def stop_token_server(directory: Path) -> None:
    """End the token server this run started (under its own directory), by its pid file."""
    from hsm.server import stop_server

    for pid_file in directory.rglob("*.pid"):
        stop_server(pid_file)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="length of the mix")
    parser.add_argument("--clients", type=int, default=16, help="client threads")
    parser.add_argument("--alone-seconds", type=float, default=5.0,
                        help="signHash alone, before the mix")
    parser.add_argument("--batch", type=int, default=50, help="hashes per signHash call")
    parser.add_argument("--communes", type=int, default=2, choices=range(1, 6),
                        help="quota-bound communes the contacts ask in")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--max-calls", type=int, default=100_000,
                        help="at most this many rounds of all clients together, per phase")
    parser.add_argument("--postgres", metavar="URL",
                        help="run on a fresh database of this PostgreSQL server (e.g. "
                             "postgresql+psycopg://postgres@127.0.0.1:5432/postgres), dropped "
                             "afterwards; default: SQLite")
    parser.add_argument("--drain-seconds", type=float, default=60.0,
                        help="how long the outbox may take to empty after the run")
    args = parser.parse_args(argv)
    if args.clients < len(ROLES):
        parser.error(f"--clients must be at least {len(ROLES)} (one per role)")
    directory = Path(tempfile.mkdtemp(prefix="tawqi-bench-load-"))
    try:
        with database(args.postgres):
            try:
                return run(args, directory)
            finally:
                stop_token_server(directory)
    finally:
        end_token_server(directory)
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

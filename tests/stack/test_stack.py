"""The whole stack as processes (scripts/stack.py: PostgreSQL, the token server, the init job,
two gunicorn APIs, nginx, two workers), driven through nginx alone.

The story: a contact's request for a hosted credential to the PIN the worker delivers by SMS
(the real Twilio SDK against a local endpoint), the holder's signature over CSC, a
revocation seen by OCSP from the exported files that nginx serves. Then the faults: the
token server restarts, PostgreSQL restarts under load, an API replica is killed with -9 in
the middle of a signing flow. One stack for the module (starting it is the slow part).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils
from cryptography.x509 import ocsp

from hsm import generate_pin
from pki.profiles import DOCUMENTATION_POLICY_OID
from tests.delivery.conftest import TwilioEndpoint, free_port, random_mobile
from tests.pgcluster import _bin

pytestmark = [pytest.mark.postgres, pytest.mark.hsm, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "stack.py"
PROVINCE = "01.051"
COMMUNE = "01.051.03.01"
SHA256 = "2.16.840.1.101.3.4.2.1"
ECDSA_SHA256 = "1.2.840.10045.4.3.2"
METRICS_TOKEN = secrets.token_hex(16)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@dataclass
class Running:
    url: str
    state: Path
    env: dict[str, str]
    twilio: TwilioEndpoint
    http: requests.Session

    def stack(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, str(SCRIPT), *args, "--state", str(self.state)],
                              env=self.env, capture_output=True, text=True, timeout=300,
                              check=check)

    def tawqi(self, *args: str) -> str:
        conf = json.loads((self.state / "stack.json").read_text())
        done = subprocess.run([str(Path(sys.executable).parent / "tawqi"), *args],
                              env=conf["env"], capture_output=True, text=True, timeout=120,
                              cwd=ROOT)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def call(self, method: str, path: str, headers: dict[str, str] | None = None,
             status: int = 200, **kwargs: Any) -> Any:
        reply = self.http.request(method, self.url + path, headers=headers, timeout=60,
                                  **kwargs)
        assert reply.status_code == status, (method, path, reply.status_code, reply.text)
        return reply.json() if reply.content else None

    def login(self, username: str, password: str) -> dict[str, str]:
        body = self.call("POST", "/v1/auth/login",
                         json={"username": username, "password": password})
        return {"Authorization": f"Bearer {body['token']}"}

    def sms(self, to: str, pattern: str, *, after: int = 0, timeout: float = 30) -> str:
        """The newest SMS to ``to`` matching ``pattern`` among those after the ``after``-th
        one; waits for the worker to send it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for body in reversed(self.twilio.bodies_to(to)[after:]):
                found = re.search(pattern, body)
                if found:
                    return found.group(1)
            time.sleep(0.1)
        raise AssertionError(f"no SMS matching {pattern!r} to {to}")

    def readyz(self) -> int:
        try:
            return self.http.get(self.url + "/readyz", timeout=30).status_code
        except requests.RequestException:
            return 0

    def wait_readyz(self, want: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while self.readyz() != want:
            assert time.monotonic() < deadline, f"/readyz never answered {want}"
            time.sleep(0.2)


def _write_secrets(directory: Path, twilio_token: str) -> None:
    values = {"so_pin": secrets.token_hex(12), "secret_key": secrets.token_hex(32),
              "service_pin": generate_pin(8), "root_pin": generate_pin(8),
              "envelope_token_pin": generate_pin(8), "twilio_auth_token": twilio_token,
              "metrics_token": METRICS_TOKEN}
    for name, value in values.items():
        (directory / name).write_text(value + "\n")
        (directory / name).chmod(0o600)


@pytest.fixture(scope="module")
def stack() -> Iterator[Running]:
    twilio = TwilioEndpoint("AC" + secrets.token_hex(16), secrets.token_hex(16))
    twilio.up()
    state = Path(tempfile.mkdtemp(prefix="tawqi-stack-"))
    secret_dir = Path(tempfile.mkdtemp(prefix="tawqi-stack-secrets-"))
    _write_secrets(secret_dir, twilio.auth_token)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAWQI_")
           or k.startswith("TAWQI_TEST_")}
    env.update({
        "TAWQI_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "TAWQI_POLICY_OID": DOCUMENTATION_POLICY_OID,
        "TAWQI_SMS_BACKEND": "twilio", "TAWQI_TWILIO_ACCOUNT_SID": twilio.account_sid,
        "TAWQI_TWILIO_FROM": "+212522000000", "TAWQI_TWILIO_BASE_URL": twilio.base_url,
        "TAWQI_ARGON2_TIME_COST": "1", "TAWQI_ARGON2_MEMORY_KIB": "1024",
        "TAWQI_JOB_TICK_SECONDS": "1",
        # Five signatures by one holder within minutes: above the production PIN limits.
        "TAWQI_RATE_LIMIT_PIN": "50/300", "TAWQI_RATE_LIMIT_OTP": "50/300",
        # A killed worker's claim lapses after this (production: 300 s).
        "TAWQI_OUTBOX_LEASE_SECONDS": "3",
        # The story's operators log in through the API without enrolling a TOTP.
        "TAWQI_TOTP_REQUIRED_ROLES": "",
    })
    running = Running(f"http://127.0.0.1:{port}", state, env, twilio, requests.Session())
    try:
        up = running.stack("up", "--secrets", str(secret_dir), "--http-port", str(port),
                           "--api-workers", "1", check=False)
        assert up.returncode == 0, up.stderr + _logs(state)
        yield running
    finally:
        running.http.close()
        running.stack("down", check=False)
        twilio.down()
        shutil.rmtree(state, ignore_errors=True)
        shutil.rmtree(secret_dir, ignore_errors=True)


def _logs(state: Path) -> str:
    out = []
    for log in sorted((state / "logs").glob("*.log")):
        out.append(f"--- {log.name}\n" + log.read_text(errors="replace")[-3000:])
    return "\n".join(out)


@dataclass
class Story:
    admin: dict[str, str]
    operator: dict[str, str]
    contact: dict[str, str]
    holder: dict[str, str]
    mobile: str
    serial: str
    pin: str
    chain: list[x509.Certificate]
    holder_id: int


@pytest.fixture(scope="module")
def story(stack: Running) -> Story:
    """Accounts, then a contact's request for a hosted credential up to the PIN the worker
    delivered, the PIN changed by its holder: all through nginx."""
    password = "bootstrap administrator passphrase"
    pw_file = stack.state / "admin-password"
    pw_file.write_text(password)
    stack.tawqi("users", "create", "dgcl.admin", "--role", "dgcl_admin", "--name",
                "Administrateur DGCL", "--password-file", str(pw_file))
    pw_file.unlink()
    admin = stack.login("dgcl.admin", password)
    passwords = {n: f"long passphrase number {i} here"
                 for i, n in enumerate(("operator", "contact", "holder"))}
    stack.call("POST", "/v1/users", admin, 201, json={
        "username": "operator", "display_name": "Opérateur", "role": "operator",
        "password": passwords["operator"]})
    stack.call("POST", "/v1/users", admin, 201, json={
        "username": "contact", "display_name": "Samira El Idrissi", "role": "contact",
        "province_code": PROVINCE, "password": passwords["contact"]})
    holder_user = stack.call("POST", "/v1/users", admin, 201, json={
        "username": "holder", "display_name": "Karim Benali", "role": "holder",
        "password": passwords["holder"]})
    operator = stack.login("operator", passwords["operator"])
    contact = stack.login("contact", passwords["contact"])
    stack.call("POST", "/v1/contacts", operator, 201, json={
        "province_code": PROVINCE, "full_name": "Samira El Idrissi",
        "title": "Cheffe de division", "phone": "0539981234",
        "postal_address": "Province d'Al Hoceima, BP 1",
        "email": "contact.alhoceima@interieur.gov.ma", "decision_reference": "DEC-2026-017",
        "decision_date": "2026-02-01", "designated_by": "Le gouverneur"})
    mobile = random_mobile()
    holder = stack.call("POST", "/v1/holders", contact, 201, json={
        "cin": "AB123456", "given_name_fr": "Karim", "surname_fr": "Benali",
        "given_name_ar": "كريم", "surname_ar": "بنعلي", "role": "president",
        "mobile": mobile, "email": "k.benali@example.ma", "commune_code": COMMUNE})
    stack.call("POST", f"/v1/users/{holder_user['id']}/holder", admin,
               json={"holder_id": holder["id"]})
    holder_h = stack.login("holder", passwords["holder"])
    request = stack.call("POST", "/v1/requests", {**contact, "Idempotency-Key": "stack-1"}, 201,
                         json={"holder_id": holder["id"], "token_form": "hosted"})
    rid = request["id"]
    stack.call("POST", f"/v1/requests/{rid}/approve", operator,
               json={"identity_check": "CIN copy checked"})
    personalised = stack.call("POST", f"/v1/requests/{rid}/personalise", operator)
    serial = personalised["certificate_serial"]
    stack.call("POST", f"/v1/requests/{rid}/activate", operator)
    # The worker sends the initial PIN through Twilio (the real SDK, a local endpoint).
    initial = stack.sms(mobile, r"(\d+) : code PIN")
    stack.call("POST", f"/v1/requests/{rid}/terms", holder_h, json={"version": "2026-01"})
    pin = generate_pin(6)
    stack.call("POST", f"/v1/requests/{rid}/pin", holder_h, 204,
               json={"old_pin": initial, "new_pin": pin})
    info = stack.call("POST", "/csc/v2/credentials/info", holder_h,
                      json={"credentialID": serial, "certificates": "chain"})
    chain = [x509.load_der_x509_certificate(base64.b64decode(c))
             for c in info["cert"]["certificates"]]
    return Story(admin, operator, contact, holder_h, mobile, serial, pin, chain, holder["id"])


def _sign(stack: Running, story: Story, text: str, *,
          between: Any = None) -> None:
    """sendOTP, the code read from the SMS, authorize, signHash; the signature verifies.
    ``between`` runs after sendOTP (a fault in the middle of the flow)."""
    seen = len(stack.twilio.bodies_to(story.mobile))
    stack.call("POST", "/csc/v2/credentials/sendOTP", story.holder,
               json={"credentialID": story.serial})
    code = stack.sms(story.mobile, r"(\d{6}) : code de signature", after=seen)
    if between is not None:
        between()
    digest = hashlib.sha256(text.encode()).digest()
    granted = stack.call("POST", "/csc/v2/credentials/authorize", story.holder, json={
        "credentialID": story.serial, "PIN": story.pin, "OTP": code,
        "hashes": [_b64(digest)], "numSignatures": 1})
    signed = stack.call("POST", "/csc/v2/signatures/signHash", story.holder, json={
        "credentialID": story.serial, "SAD": granted["SAD"], "hashes": [_b64(digest)],
        "hashAlgorithmOID": SHA256, "signAlgo": ECDSA_SHA256})
    public = story.chain[0].public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    public.verify(base64.b64decode(signed["signatures"][0]), digest,
                  ec.ECDSA(utils.Prehashed(hashes.SHA256())))


def _ocsp_get(stack: Running, story: Story) -> requests.Response:
    request = ocsp.OCSPRequestBuilder().add_certificate(
        story.chain[0], story.chain[1], hashes.SHA1()).build()  # RFC 5019: SHA-1 CertID
    encoded = quote(_b64(request.public_bytes(serialization.Encoding.DER)), safe="")
    return stack.http.get(f"{stack.url}/ocsp/{encoded}", timeout=30)


def _ocsp_status(stack: Running, story: Story, want: ocsp.OCSPCertStatus) -> None:
    """GET /ocsp/<request> through nginx answers ``want`` from an exported file (nginx marks
    those with its Cache-Control line; the API's fallback does not); runs the OCSP job (what
    the workers do each period) until it does."""
    deadline = time.monotonic() + 30
    while True:
        reply = _ocsp_get(stack, story)
        status = ocsp.load_der_ocsp_response(reply.content).certificate_status \
            if reply.status_code == 200 else None
        if status == want and "max-age=60" in reply.headers.get("Cache-Control", ""):
            return
        assert time.monotonic() < deadline, (reply.status_code, status, reply.headers)
        stack.tawqi("jobs", "run", "ocsp-resign")


# The tests below share one stack and run in this order; the revocation comes last.

def test_1_story_through_nginx(stack: Running, story: Story) -> None:
    _sign(stack, story, "permit 1")
    ca = stack.http.get(f"{stack.url}/ca/2.crt", timeout=30)
    assert ca.status_code == 200
    _ocsp_status(stack, story, ocsp.OCSPCertStatus.GOOD)
    status = stack.stack("status", check=False)
    assert status.returncode == 0, status.stdout + stack.http.get(stack.url + "/readyz").text
    # Observability: /metrics is not public; a replica answers its scraper with the token,
    # aggregated over its gunicorn workers; log lines are JSON with the request id.
    assert stack.http.get(f"{stack.url}/metrics", timeout=30).status_code == 403
    api1 = json.loads((stack.state / "stack.json").read_text())["ports"]["api1"]
    scrape = f"http://127.0.0.1:{api1}/metrics"
    assert requests.get(scrape, timeout=30).status_code == 401
    text = requests.get(scrape, headers={"Authorization": f"Bearer {METRICS_TOKEN}"},
                        timeout=30).text
    assert "tawqi_http_requests_total" in text
    lines = [json.loads(line) for line in
             (stack.state / "logs" / "api1.log").read_text().splitlines()
             if line.startswith("{")]
    assert any(line["logger"] == "gunicorn.access" and " /v1/" in line["message"]
               for line in lines)


def test_2_token_server_restart(stack: Running, story: Story) -> None:
    """The API and the workers are not restarted: /readyz says 503 while the token server
    is down, 200 once it is back, and the next signature succeeds."""
    stack.stack("stop", "hsm")
    stack.wait_readyz(503)
    stack.stack("start", "hsm")
    stack.wait_readyz(200)
    _sign(stack, story, "permit after the token server came back")


def test_3_api_replica_killed_mid_flow(stack: Running, story: Story) -> None:
    """kill -9 of one API replica between sendOTP and authorize: nginx sends the rest of the
    flow to the other replica and it completes."""
    _sign(stack, story, "permit with a replica gone",
          between=lambda: stack.stack("stop", "api1", "--signal", "KILL"))
    _sign(stack, story, "and another one")
    stack.stack("start", "api1")


def test_3b_worker_killed_mid_send(stack: Running, story: Story) -> None:
    """kill -9 of the worker whose SMS the provider accepted but had not yet answered: the
    other worker takes the message over once the claim lapses, finds it at the provider
    (Twilio's message list) and does not send it again; the code works."""
    stack.stack("stop", "worker2")  # one sender, so that we know whom to kill
    twilio = stack.twilio
    before = len(twilio.bodies_to(story.mobile))
    twilio.held.clear()
    twilio.release.clear()
    twilio.hold_after = len(twilio.messages)
    try:
        stack.call("POST", "/csc/v2/credentials/sendOTP", story.holder,
                   json={"credentialID": story.serial})
        assert twilio.held.wait(30), "the worker did not send"
        stack.stack("stop", "worker1", "--signal", "KILL")
    finally:
        twilio.hold_after = None
        twilio.release.set()
    stack.stack("start", "worker2")
    code = stack.sms(story.mobile, r"(\d{6}) : code de signature", after=before)
    deadline = time.monotonic() + 60
    while any(m["status"] in ("pending", "sending") for m in stack.call(
            "GET", f"/v1/outbox?holder_id={story.holder_id}", story.operator)["items"]):
        assert time.monotonic() < deadline, "the message was never settled"
        time.sleep(0.2)
    assert len(twilio.bodies_to(story.mobile)) == before + 1  # settled, not sent twice
    digest = hashlib.sha256(b"after a worker died").digest()
    granted = stack.call("POST", "/csc/v2/credentials/authorize", story.holder, json={
        "credentialID": story.serial, "PIN": story.pin, "OTP": code,
        "hashes": [_b64(digest)], "numSignatures": 1})
    assert granted["SAD"]
    stack.stack("start", "worker1")


def test_4_postgres_restart_under_load(stack: Running, story: Story) -> None:
    """Writes through nginx while PostgreSQL restarts: each is acknowledged (201) or refused
    cleanly (503 problem); the acknowledged ones are all there afterwards; no restart of the
    API."""
    acknowledged: list[str] = []
    refused: list[tuple[int, str]] = []
    lock = threading.Lock()
    halfway = threading.Event()

    def writer(index: int) -> None:
        with requests.Session() as http:
            for n in range(30):
                if n == 10:
                    halfway.set()
                cin = f"PG{index}{n:04d}"
                try:
                    reply = http.post(f"{stack.url}/v1/holders", headers=story.contact,
                                      timeout=60, json={
                                          "cin": cin, "given_name_fr": "Karim",
                                          "surname_fr": "Benali", "given_name_ar": "كريم",
                                          "surname_ar": "بنعلي", "role": "official",
                                          "mobile": random_mobile(),
                                          "email": f"{cin.lower()}@example.ma",
                                          "commune_code": COMMUNE})
                except requests.RequestException as exc:
                    with lock:
                        refused.append((0, type(exc).__name__))
                    continue
                with lock:
                    if reply.status_code == 201:
                        acknowledged.append(cin)
                    else:
                        refused.append((reply.status_code,
                                        reply.headers.get("Content-Type", "") + reply.text))
                time.sleep(0.02)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    assert halfway.wait(60)
    stack.stack("stop", "pg")
    time.sleep(1)
    stack.stack("start", "pg")
    for thread in threads:
        thread.join(120)
    assert not any(thread.is_alive() for thread in threads)
    assert all(status == 503 and "problem+json" in kind for status, kind in refused), \
        refused[:5]
    stack.wait_readyz(200)
    listed = stack.call("GET", "/v1/holders?limit=200", story.contact)
    stored = {h["cin"] for h in listed["items"]}
    assert set(acknowledged) <= stored
    assert len(acknowledged) + len(refused) == 90
    _sign(stack, story, "permit after the database came back")


def test_5_revocation_seen_by_ocsp_from_the_export(stack: Running, story: Story) -> None:
    """The workers rewrite the export when an answer changes: the revocation is in the file
    nginx serves within about a second, without running the job by hand."""
    stack.call("POST", f"/v1/certificates/{story.serial}/revoke", story.operator,
               json={"reason": "keyCompromise"})
    deadline = time.monotonic() + 5  # TAWQI_OCSP_SYNC_SECONDS=1; slack for a busy machine
    while True:
        reply = _ocsp_get(stack, story)
        assert reply.status_code == 200 and "max-age=60" in reply.headers["Cache-Control"]
        if ocsp.load_der_ocsp_response(reply.content).certificate_status == \
                ocsp.OCSPCertStatus.REVOKED:
            break
        assert time.monotonic() < deadline, "the export still says good"
        time.sleep(0.1)


def test_6_backup_restore_into_a_fresh_database(stack: Running, story: Story) -> None:
    """pg_dump of the live database restored into a fresh one (docs/operations.md): the
    audit chain verifies there, its OCSP answers are the ones nginx serves, and the CA signs
    on with it (a CRL)."""
    conf = json.loads((stack.state / "stack.json").read_text())
    port = str(conf["ports"]["pg"])
    as_pg = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    dump = subprocess.run([*as_pg, _bin("pg_dump"), "-h", "127.0.0.1", "-p", port, "-U",
                           "postgres", "-Fc", "tawqi"], capture_output=True, check=True,
                          timeout=120).stdout
    subprocess.run([*as_pg, _bin("createdb"), "-h", "127.0.0.1", "-p", port, "-U", "postgres",
                    "tawqi_restored"], check=True, capture_output=True, timeout=60)
    subprocess.run([*as_pg, _bin("pg_restore"), "-h", "127.0.0.1", "-p", port, "-U",
                    "postgres", "--no-owner", "-d", "tawqi_restored"], input=dump,
                   check=True, capture_output=True, timeout=120)
    restored = dict(conf["env"], TAWQI_DATABASE_URL=conf["env"]["TAWQI_DATABASE_URL"]
                    .rsplit("/", 1)[0] + "/tawqi_restored")
    restored.pop("TAWQI_OCSP_EXPORT_DIR")
    tawqi = str(Path(sys.executable).parent / "tawqi")

    def run(*args: str) -> str:
        done = subprocess.run([tawqi, *args], env=restored, capture_output=True, text=True,
                              timeout=120, cwd=ROOT)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    run("audit", "verify")
    export = stack.state / "restored-export"
    run("ocsp", "export", str(export))
    index = (export / "index.tsv").read_text().splitlines()[1:]
    row = next(line.split("\t") for line in index if line.startswith(story.serial))
    served = stack.http.get(stack.url + row[1], timeout=30)
    assert served.status_code == 200
    assert (export / row[2]).read_bytes() == served.content  # the same signed answer
    assert ocsp.load_der_ocsp_response(served.content).certificate_status == \
        ocsp.OCSPCertStatus.REVOKED
    assert "CRL #" in run("crl", "publish")  # the CA signs on with the restored database

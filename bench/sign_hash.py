"""signHash throughput over HTTP against the raw sign rate of the same key and module.

Run: ``.venv/bin/python -m bench.sign_hash [--batch 1000] [--rounds 5] [--workers 2]``

A throwaway service under ``/tmp`` (SQLite, SoftHSM2 tokens, the CA, a hosted holder whose
PIN was changed, a platform API key), served by gunicorn with the production settings file
(``deploy/gunicorn.conf.py``, sync workers; the tokens through the token server). Then,
round by round in turn:

* **raw** (the baseline): a bare python-pkcs11 loop, ``key.sign(digest,
  mechanism=ECDSA)``, on the same key through the same module (p11-kit's client and the
  token server, as served), in this process: the rate any PKCS#11 client of the token gets;
* **ours in process**: the same key through ``hsm.TokenLibrary`` as the service configures
  it (wrong-PIN counts in the database), one ``sign`` per digest and through the batch path
  (``sign_digests``, which a served signHash takes); both use two module calls per
  signature where python-pkcs11 makes three, and the batch path shares the batch between
  two connections (signing lanes, ``TAWQI_SIGNING_LANES``). Also with the counts in memory, for
  reference, before the server starts;
* **http**: ``credentials/sendOTP`` (the code read from the outbox, as the holder's phone
  would), ``credentials/authorize`` for ``--batch`` hashes, then the timed part: one
  ``signatures/signHash`` call with the batch (JSON in and out, SAD consumed, PIN login on
  the token, every hash signed).

Before each round the key is fetched again, untimed: a served call logs the token out and
in. **workers**: ``--workers`` clients sending signHash calls at once, to one gunicorn
worker, then to ``--workers`` workers (one token state through the token server), as
configured (signing lanes on: one worker already signs a batch through two connections)
and with one lane per worker (``TAWQI_SIGNING_LANES=1``): the ratio of the last two
throughputs is the scaling with processes (goal >= 1.8 with 2).

Best round of each, and the ratio of each pair of rounds. ``http_vs_token_layer`` is HTTP
against our own token layer in process (what the request itself costs). The LAST line is
``ratio_vs_raw=<x>`` (best http / best bare python-pkcs11 loop, goal >= 0.95).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import requests as http

from bench import bounded, end_token_server

ROOT = Path(__file__).resolve().parent.parent
PYTHON = Path(sys.executable)
SHA256 = "2.16.840.1.101.3.4.2.1"


@dataclass
class Service:
    """A prepared throwaway deployment."""

    directory: Path
    env: dict[str, str]
    serial: str
    pin: str
    mobile: str
    api_key: str
    token_label: str
    key_id: bytes


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def environment(directory: Path) -> dict[str, str]:
    from hsm import generate_pin
    from hsm.softhsm import write_softhsm_config
    from pki.profiles import DOCUMENTATION_POLICY_OID

    conf = write_softhsm_config(directory / "softhsm")
    return {
        "SOFTHSM2_CONF": str(conf), "TAWQI_VAR_DIR": str(directory),
        "TAWQI_SO_PIN": secrets.token_hex(8), "TAWQI_SERVICE_PIN": generate_pin(8),
        "TAWQI_ROOT_PIN": generate_pin(8), "TAWQI_ENVELOPE_TOKEN_PIN": generate_pin(8),
        "TAWQI_RATE_LIMIT_PIN": "100000/60", "TAWQI_RATE_LIMIT_OTP": "100000/60",
        "TAWQI_RATE_LIMIT_CLIENT": "100000/60",
        "TAWQI_PUBLIC_URL": "http://pki.tawqi.ma", "TAWQI_LOG_LEVEL": "WARNING",
        "TAWQI_POLICY_OID": DOCUMENTATION_POLICY_OID,
    }


def read_sms(runtime: Any, mobile: str, pattern: str) -> str:
    """Drain the outbox into a console inbox and read the newest matching SMS."""
    from api.wiring import Wiring
    from delivery.backends import ConsoleInbox

    inbox = ConsoleInbox()
    Wiring(runtime).worker(inbox=inbox).drain()
    for channel, body in reversed(inbox.for_recipient(mobile)):
        found = re.search(pattern, body)
        if channel == "sms" and found:
            return found.group(1)
    raise RuntimeError(f"no SMS matching {pattern!r}")


def prepare(directory: Path) -> Service:
    """Database, CA, envelope key, a hosted holder ready to sign, a platform API key."""
    import logging

    logging.disable(logging.WARNING)
    env = environment(directory)
    os.environ.update(env)
    from api import accounts
    from api.runtime import Runtime
    from core import migrate
    from core.config import Settings
    from delivery import contacts, holders, personalisation, pins, requests
    from delivery.envelopes import provision_envelope_key
    from hsm import generate_pin
    from pki import ca
    from pki.models import CertificateRecord
    from pki.profiles import Profile
    from quotas import policy, refdata

    settings = Settings.from_env()
    runtime = Runtime(settings)
    try:
        migrate.upgrade(runtime.engine)
        clock, tokens = runtime.clock, runtime.tokens()
        with runtime.unit_of_work() as session:
            refdata.load(session, clock)
            policy.ensure_default_policies(session, clock)
            ca.init_ca(session, clock, tokens, Profile.from_settings(settings),
                       root_token=settings.root_token_label,
                       ca_token=settings.ca_token_label, so_pin=settings.so_pin,
                       pin=settings.service_pin, root_pin=settings.root_pin, actor="bench")
        provision_envelope_key(tokens, token_label=settings.envelope_token,
                               token_pin=settings.envelope_token_pin,
                               key_label=settings.envelope_key, so_pin=settings.so_pin)
        from api.wiring import Wiring

        wiring = Wiring(runtime)
        personaliser, sealer = wiring.personaliser(), wiring.sealer()
        with runtime.unit_of_work() as session:
            contact = contacts.designate_contact(session, clock, contacts.ContactDesignation(
                province_code="01.051", full_name="Samira El Idrissi", title="Cheffe de division",
                phone="0539981234", postal_address="Al Hoceima",
                email="contact@interieur.gov.ma", decision_reference="DEC-1",
                decision_date=date(2026, 1, 15), designated_by="Le gouverneur"),
                actor="bench")
            holder = holders.register_holder(session, clock, holders.HolderRegistration(
                cin="BE123456", given_name_fr="Karim", surname_fr="Benali",
                given_name_ar="كريم", surname_ar="بنعلي", role="president",
                commune_code="01.051.03.01", mobile="+212661000001",
                email="karim@commune.example.ma"), actor="bench", contact_id=contact.id)
            request = requests.submit_request(session, clock, contact_id=contact.id,
                                              holder_id=holder.id, token_form="hosted",
                                              actor="bench")
            requests.approve_request(session, clock, request.id, actor="bench",
                                     identity_check="bench")
            personalisation.personalise_request(session, clock, request.id,
                                                personaliser=personaliser, sealer=sealer,
                                                actor="bench", policy=wiring.policy)
            requests.activate_request(session, clock, request.id, actor="bench")
            requests.accept_terms(session, clock, request.id,
                                  version=settings.terms_version, actor="bench")
            request_id, mobile = request.id, holder.mobile
            key = accounts.create_api_key(session, clock, name="platform", actor="bench").key
        initial = read_sms(runtime, mobile, r"^(\d+) : code PIN")
        pin = generate_pin(6)
        pins.change_pin(runtime.sessions, clock, tokens, request_id, old_pin=initial,
                        new_pin=pin, actor="bench")
        with runtime.unit_of_work() as session:
            serial = str(requests.get_request(session, request_id).certificate_serial)
            row = session.query(CertificateRecord).filter_by(serial=serial).one()
            label, key_id = row.token_label, bytes.fromhex(row.key_id)
        return Service(directory, env, serial, pin, mobile, key, label, key_id)
    finally:
        runtime.close()


class Server:
    """gunicorn with the production settings file, on a free port."""

    def __init__(self, service: Service, workers: int = 1,
                 extra_env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        env = {**os.environ, **service.env, "GUNICORN_BIND": f"127.0.0.1:{self.port}",
               "GUNICORN_WORKERS": str(workers), "PYTHONPATH": str(ROOT),
               # The bench bounds each call itself (bench.bounded) and names the step that
               # overran; gunicorn's own 60 s would kill a slow first signature on a loaded
               # machine with a bare 500.
               "GUNICORN_TIMEOUT": os.environ.get("GUNICORN_TIMEOUT", "600"),
               **(extra_env or {})}
        self.process = subprocess.Popen(
            [str(PYTHON.parent / "gunicorn"), "-c", str(ROOT / "deploy" / "gunicorn.conf.py"),
             "--log-level", "warning", "--access-logfile", "/dev/null", "api.wsgi:app"],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if http.get(self.url + "/healthz", timeout=5).status_code == 200:
                    return
            except http.RequestException:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError("gunicorn did not start")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()


def runtime_for(service: Service) -> Any:
    os.environ.update(service.env)
    from api.runtime import Runtime
    from core.config import Settings

    return Runtime(Settings.from_env())


class Raw:
    """Prehashed SHA-256 signatures per second with the service's key through hsm/, in
    this process (``in_memory``: wrong-PIN counts in memory instead of the database)."""

    def __init__(self, service: Service, batch: int, *, in_memory: bool) -> None:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec, utils

        from hsm import InMemoryPinAttemptStore, TokenLibrary

        self.service = service
        self.runtime = runtime_for(service)
        self.in_memory = in_memory
        self.tokens = TokenLibrary(self.runtime.settings.pkcs11_module,
                                   attempts=InMemoryPinAttemptStore()) if in_memory \
            else self.runtime.tokens()
        self.digests = [hashlib.sha256(f"raw {i}".encode()).digest() for i in range(batch)]
        self.algorithm = ec.ECDSA(utils.Prehashed(hashes.SHA256()))
        self.ec = ec

    def round(self) -> float:
        """One batch; the key is fetched again first, untimed (a served signHash logs the
        token out and in: one token server, one login state)."""
        key = self.tokens.private_key(self.service.token_label, self.service.pin,
                                      key_id=self.service.key_id)
        if not isinstance(key, self.ec.EllipticCurvePrivateKey):
            raise TypeError("the benchmark holder key is EC P-256")
        with bounded.step("raw token signatures"):
            start = time.perf_counter()
            for digest in self.digests:
                key.sign(digest, self.algorithm)
            return len(self.digests) / (time.perf_counter() - start)

    def batch_round(self) -> float:
        """One batch through the token layer's batch path (``sign_digests``: what a served
        signHash uses), the key fetched again first, untimed."""
        from cryptography.hazmat.primitives import hashes

        key = self.tokens.private_key(self.service.token_label, self.service.pin,
                                      key_id=self.service.key_id)
        with bounded.step("raw token signatures (batch)"):
            start = time.perf_counter()
            key.sign_digests(self.digests, hashes.SHA256())
            return len(self.digests) / (time.perf_counter() - start)

    def bare_round(self) -> float:
        """One batch through a bare python-pkcs11 loop on the same key and module (the
        outside baseline: what any PKCS#11 client of the token gets), after our library
        logged the token in again (untimed; login is the token's, shared by sessions)."""
        import pkcs11

        self.tokens.private_key(self.service.token_label, self.service.pin,
                                key_id=self.service.key_id)
        token = pkcs11.lib(self.tokens.module_path).get_token(
            token_label=self.service.token_label)
        with token.open() as session:
            key: Any = session.get_key(pkcs11.ObjectClass.PRIVATE_KEY, id=self.service.key_id)
            with bounded.step("bare python-pkcs11 signatures"):
                start = time.perf_counter()
                for digest in self.digests:
                    key.sign(digest, mechanism=pkcs11.Mechanism.ECDSA)
                return len(self.digests) / (time.perf_counter() - start)

    def close(self) -> None:
        if self.in_memory:
            self.tokens.close()
        self.runtime.close()


def authorize(client: http.Session, url: str, service: Service, runtime: Any,
              body: dict[str, Any]) -> str:
    headers = {"Authorization": f"Bearer {service.api_key}"}
    sent = bounded.post(client, url + "/csc/v2/credentials/sendOTP", "csc.sendOTP", 60,
                        headers=headers, json={"credentialID": service.serial})
    sent.raise_for_status()
    with bounded.step("outbox drain (the signing code)", 60):
        code = read_sms(runtime, service.mobile, r"(\d{6}) : code de signature")
    answer = bounded.post(client, url + "/csc/v2/credentials/authorize", "csc.authorize", 60,
                          headers=headers, json={"credentialID": service.serial,
                                                 "PIN": service.pin, "OTP": code, **body})
    answer.raise_for_status()
    sad: str = answer.json()["SAD"]
    return sad


def http_round(service: Service, server: Server, client: http.Session, runtime: Any,
               batch: int, index: int) -> float:
    """One signHash call of ``batch`` hashes (its SAD obtained first, untimed)."""
    headers = {"Authorization": f"Bearer {service.api_key}"}
    digests = [base64.b64encode(hashlib.sha256(f"{index} {i}".encode()).digest()).decode()
               for i in range(batch)]
    sad = authorize(client, server.url, service, runtime,
                    {"hashes": digests, "numSignatures": batch})
    body = {"credentialID": service.serial, "SAD": sad, "hashes": digests,
            "hashAlgorithmOID": SHA256, "signAlgo": "1.2.840.10045.4.3.2"}
    start = time.perf_counter()
    answer = bounded.post(client, server.url + "/csc/v2/signatures/signHash",
                          f"csc.signHash, round {index}", json=body, headers=headers)
    elapsed = time.perf_counter() - start
    answer.raise_for_status()
    assert len(answer.json()["signatures"]) == batch
    return batch / elapsed


def interleaved(service: Service, server: Server, batch: int, rounds: int
                ) -> tuple[list[float], list[float], list[float], list[float]]:
    """Rates of the bare python-pkcs11 loop, of our token layer (one by one, batch path;
    counts in the database, as served) and of HTTP signHash, round by round in turn, so
    that a load which changes during the run weighs on each alike."""
    database = Raw(service, batch, in_memory=False)
    runtime = runtime_for(service)
    client = http.Session()
    bare, raw, batched, wire = [], [], [], []
    try:
        for index in range(rounds):
            bare.append(database.bare_round())
            raw.append(database.round())
            batched.append(database.batch_round())
            wire.append(http_round(service, server, client, runtime, batch, index))
    finally:
        runtime.close()
        database.close()
    return bare, raw, batched, wire


def in_memory_rate(service: Service, batch: int, rounds: int) -> float:
    """The raw rate with the wrong-PIN counts in memory (for reference), best round,
    before any server runs (a second library instance of the module in this process)."""
    memory = Raw(service, batch, in_memory=True)
    try:
        return max(memory.round() for _ in range(rounds))
    finally:
        memory.close()


def parallel_rate(service: Service, server: Server, batch: int, rounds: int,
                  clients: int) -> float:
    """Signatures per second of ``clients`` threads each sending ``rounds`` signHash calls
    at once (the SADs are obtained first, one after the other, not timed)."""
    import threading

    runtime = runtime_for(service)
    headers = {"Authorization": f"Bearer {service.api_key}"}
    bodies: list[list[dict[str, Any]]] = [[] for _ in range(clients)]
    try:
        client = http.Session()
        for index in range(rounds * clients):
            digests = [base64.b64encode(hashlib.sha256(f"p{index} {i}".encode()).digest())
                       .decode() for i in range(batch)]
            sad = authorize(client, server.url, service, runtime,
                            {"hashes": digests, "numSignatures": batch})
            bodies[index % clients].append(
                {"credentialID": service.serial, "SAD": sad, "hashes": digests,
                 "hashAlgorithmOID": SHA256, "signAlgo": "1.2.840.10045.4.3.2"})
    finally:
        runtime.close()
    failures: list[BaseException] = []

    def run(mine: list[dict[str, Any]], number: int) -> None:
        session = http.Session()
        try:
            for index, body in enumerate(mine):
                answer = bounded.post(session, server.url + "/csc/v2/signatures/signHash",
                                      f"csc.signHash, client {number}, call {index}",
                                      json=body, headers=headers)
                answer.raise_for_status()
                if len(answer.json()["signatures"]) != batch:
                    raise RuntimeError("signHash answered a short batch")
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(mine, number))
               for number, mine in enumerate(bodies)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(bounded.DEFAULT_SECONDS * rounds)
        if thread.is_alive():
            raise bounded.StepOverran("csc.signHash (parallel clients)",
                                      bounded.DEFAULT_SECONDS * rounds)
    elapsed = time.perf_counter() - start
    if failures:
        raise failures[0]
    return batch * rounds * clients / elapsed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2,
                        help="the second server's workers (the first has one)")
    args = parser.parse_args(argv)
    directory = Path(tempfile.mkdtemp(prefix="tawqi-bench-sign-"))
    try:
        service = prepare(directory)
        raw_memory = in_memory_rate(service, args.batch, args.rounds)
        server = Server(service, workers=1)
        try:
            bares, singles, batches, rates = interleaved(service, server, args.batch,
                                                         args.rounds)
            one = parallel_rate(service, server, args.batch, args.rounds, args.workers)
        finally:
            server.stop()
        served = {}  # (workers, lanes) -> sig/s of --workers clients at once
        for workers, lanes in ((args.workers, None), (1, 1), (args.workers, 1)):
            extra = {"TAWQI_SIGNING_LANES": str(lanes)} if lanes else None
            server = Server(service, workers=workers, extra_env=extra)
            try:
                served[workers, lanes] = parallel_rate(service, server, args.batch,
                                                       args.rounds, args.workers)
            finally:
                server.stop()
        many = served[args.workers, None]
        alone, together = served[1, 1], served[args.workers, 1]
        # Ours in process: the faster of the token layer's two paths (one signature per
        # call, or the batch path a served signHash takes), round by round.
        raws = [max(one, many) for one, many in zip(singles, batches, strict=True)]
        raw, bare = max(raws), max(bares)
        best = max(rates)
        print(f"batch: {args.batch} hashes per signHash call, {args.rounds} rounds (raw and "
              "HTTP in turn, best of each); load average "
              f"{' '.join(Path('/proc/loadavg').read_text().split()[:3])}")
        print(f"bare python-pkcs11 loop, same key and module (the raw token rate): "
              f"{bare:,.0f} sig/s")
        print(f"our token layer in process (counts in the database, as served): "
              f"{max(singles):,.0f} sig/s one signature per call, {max(batches):,.0f} sig/s "
              "through the batch path (two module calls per signature)")
        print(f"our token layer, counts in memory: {raw_memory:,.0f} sig/s")
        print("http signHash, 1 worker, 1 client: " + ", ".join(f"{r:,.0f}" for r in rates)
              + f" sig/s (best {best:,.0f}; {1000 * args.batch / best:.1f} ms per call)")
        print(f"http signHash, {args.workers} clients at once, as configured (signing lanes "
              f"on): 1 worker {one:,.0f} sig/s, {args.workers} workers {many:,.0f} sig/s "
              f"(x{many / one:.2f}: on {os.cpu_count()} cores one worker's lanes already "
              "keep them busy)")
        print(f"http signHash, {args.workers} clients at once, one lane per worker "
              f"(TAWQI_SIGNING_LANES=1, scaling with processes): 1 worker {alone:,.0f} "
              f"sig/s, {args.workers} workers {together:,.0f} sig/s "
              f"(workers_ratio={together / alone:.2f}, goal >= 1.8 with 2)")
        paired = sorted(w / r for w, r in zip(rates, bares, strict=True))
        print("http / bare python-pkcs11, round by round: "
              + ", ".join(f"{x:.3f}" for x in paired)
              + f" (median {paired[len(paired) // 2]:.3f})")
        print(f"http_vs_token_layer={best / raw:.3f} (HTTP against our own token layer in "
              "process: what the request adds)")
        print(f"ratio_vs_raw={best / bare:.3f}")
    except bounded.StepOverran as exc:
        raise SystemExit(str(exc)) from exc
    finally:
        end_token_server(directory)
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()

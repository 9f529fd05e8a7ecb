"""Factories and local providers for the delivery tests.

``twilio_endpoint`` is a local HTTP server speaking the part of Twilio's REST API the SDK
uses to send an SMS; ``smtp_sink`` a real aiosmtpd server. Both can go down and come back.
"""

from __future__ import annotations

import base64
import ipaddress
import itertools
import json
import secrets
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
from aiosmtpd.controller import Controller
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from core.clock import Clock
from core.db import make_engine, make_session_factory, transaction
from delivery import contacts, holders
from delivery.envelopes import TokenSealer, provision_envelope_key
from delivery.holders import HolderProfile
from delivery.models import (
    OUTBOX_DEAD,
    OUTBOX_PENDING,
    OUTBOX_SENDING,
    Contact,
    Holder,
    OutboxMessage,
)
from delivery.personalisation import PersonalisedToken
from hsm import TokenLibrary, generate_pin
from tests.conftest import _drop_postgres, _fresh_postgres

PROVINCE = "01.051"  # Al Hoceima
COMMUNE_A = "01.051.03.01"  # rural, < 20,000 people: 3 certificates a year
COMMUNE_B = "01.051.01.05"  # Imzouren, 20,000-50,000: 4 a year
OTHER_PROVINCE = "01.151"  # Chefchaouen
OTHER_PROVINCE_COMMUNE = "01.151.01.01"

_years = itertools.count(3000)


def fresh_year() -> int:
    """A quota year no other test uses (for tests that commit)."""
    return next(_years)


def random_cin() -> str:
    letters = "".join(secrets.choice("ABCDEFGHJKLMNPRSTUVWXYZ") for _ in range(2))
    return f"{letters}{secrets.randbelow(900000) + 100000}"


def random_mobile() -> str:
    return f"+21266{secrets.randbelow(10**7):07d}"


def designation(province: str = PROVINCE, **changes: Any) -> contacts.ContactDesignation:
    values: dict[str, Any] = {
        "province_code": province, "full_name": "Samira El Idrissi",
        "title": "Cheffe de la division des collectivités territoriales",
        "phone": "0539 98 12 34", "postal_address": "Province d'Al Hoceima, BP 1, Al Hoceima",
        "email": "contact.alhoceima@interieur.gov.ma", "decision_reference": "DEC-2026-017",
        "decision_date": date(2026, 2, 1), "designated_by": "Le gouverneur"}
    values.update(changes)
    return contacts.ContactDesignation(**values)


def make_contact(session: Session, clock: Clock, province: str = PROVINCE,
                 **changes: Any) -> Contact:
    return contacts.designate_contact(session, clock, designation(province, **changes),
                                      actor="governor")


def registration(commune: str | None = COMMUNE_A, **changes: Any) -> holders.HolderRegistration:
    values: dict[str, Any] = {
        "cin": random_cin(), "given_name_fr": "Karim", "surname_fr": "Benali",
        "given_name_ar": "كريم", "surname_ar": "بنعلي", "role": "president",
        "mobile": random_mobile(), "email": f"k.{uuid.uuid4().hex[:8]}@example.ma",
        "commune_code": commune}
    values.update(changes)
    return holders.HolderRegistration(**values)


def make_holder(session: Session, clock: Clock, commune: str | None = COMMUNE_A, *,
                contact: Contact | None = None, **changes: Any) -> Holder:
    return holders.register_holder(session, clock, registration(commune, **changes),
                                   actor="contact",
                                   contact_id=contact.id if contact else None)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ---------------------------------------------------------------------------- Twilio


@dataclass
class SentSms:
    sid: str
    to: str
    from_: str
    body: str
    date_sent: datetime = field(default_factory=lambda: datetime.now(UTC))


def _twilio_date(at: datetime) -> str:
    return format_datetime(at.astimezone(UTC), usegmt=True)


def _date_filter(value: str) -> date:
    """Twilio's ``DateSent`` filters take ``YYYY-MM-DD``; the SDK sends an ISO datetime."""
    return date.fromisoformat(value[:10])


@dataclass
class TwilioEndpoint:
    """POST /2010-04-01/Accounts/{sid}/Messages.json → 201 JSON, as Twilio answers; GET of
    the same path lists messages newest first, filtered by ``To`` and ``DateSent``
    (``DateSent=day``, ``DateSent>=day``, ``DateSent<=day``), paged by ``PageSize``.

    ``slow`` (seconds): record the message, then answer only after that delay (longer than
    the client's timeout: the provider accepted a message its client saw time out).
    ``hold_after`` (n): once n messages are recorded, record the next one and hold every
    answer until ``release`` is set (the test kills the worker meanwhile); ``held`` is set
    when that happens."""

    account_sid: str
    auth_token: str
    port: int = field(default_factory=free_port)
    messages: list[SentSms] = field(default_factory=list)
    fail_next: int = 0  # answer 503 to that many requests (the provider is in trouble)
    requests_seen: int = 0
    lookups: int = 0
    slow: float = 0.0
    hold_after: int | None = None
    held: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def up(self) -> None:
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _reply(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up waiting (slow mode) or was killed

            def _authorised(self) -> bool:
                expected = "Basic " + base64.b64encode(
                    f"{endpoint.account_sid}:{endpoint.auth_token}".encode()).decode()
                if self.headers.get("Authorization") != expected:
                    self._reply(401, {"code": 20003, "message": "Authenticate", "status": 401})
                    return False
                return True

            def do_GET(self) -> None:
                path, _, query = self.path.partition("?")
                base = f"/2010-04-01/Accounts/{endpoint.account_sid}/Messages.json"
                if path != base:
                    self._reply(404, {"code": 20404, "message": "not found", "status": 404})
                    return
                if not self._authorised():
                    return
                with endpoint._lock:
                    endpoint.lookups += 1
                    failing = endpoint.fail_next > 0
                    if failing:
                        endpoint.fail_next -= 1
                    found = list(reversed(endpoint.messages))
                if failing:
                    self._reply(503, {"code": 20503, "message": "Service unavailable",
                                      "status": 503})
                    return
                args = {k: v[0] for k, v in parse_qs(query).items()}
                if "To" in args:
                    found = [m for m in found if m.to == args["To"]]
                if "DateSent" in args:
                    day = _date_filter(args["DateSent"])
                    found = [m for m in found if m.date_sent.date() == day]
                if "DateSent>" in args:
                    day = _date_filter(args["DateSent>"])
                    found = [m for m in found if m.date_sent.date() >= day]
                if "DateSent<" in args:
                    day = _date_filter(args["DateSent<"])
                    found = [m for m in found if m.date_sent.date() <= day]
                size = int(args.get("PageSize", 50))
                self._reply(200, {
                    "messages": [endpoint.resource(m) for m in found[:size]],
                    "first_page_uri": base, "next_page_uri": None, "previous_page_uri": None,
                    "page": 0, "page_size": size, "start": 0, "end": min(size, len(found)),
                    "uri": base})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                with endpoint._lock:
                    endpoint.requests_seen += 1
                    failing = endpoint.fail_next > 0
                    if failing:
                        endpoint.fail_next -= 1
                path = f"/2010-04-01/Accounts/{endpoint.account_sid}/Messages.json"
                if self.path != path:
                    self._reply(404, {"code": 20404, "message": "not found", "status": 404})
                    return
                if not self._authorised():
                    return
                if failing:
                    self._reply(503, {"code": 20503, "message": "Service unavailable",
                                      "status": 503})
                    return
                if not form.get("To", "").startswith("+"):
                    self._reply(400, {"code": 21211, "message": "Invalid 'To' Phone Number",
                                      "status": 400})
                    return
                sms = SentSms("SM" + uuid.uuid4().hex, form["To"], form.get("From", ""),
                              form.get("Body", ""))
                with endpoint._lock:
                    hold = (endpoint.hold_after is not None
                            and len(endpoint.messages) >= endpoint.hold_after)
                    endpoint.messages.append(sms)
                if hold:
                    endpoint.held.set()
                    endpoint.release.wait(30)
                if endpoint.slow:
                    time.sleep(endpoint.slow)
                resource = endpoint.resource(sms)
                resource.update(status="queued", date_sent=None)
                self._reply(201, resource)

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def resource(self, sms: SentSms) -> dict[str, Any]:
        path = f"/2010-04-01/Accounts/{self.account_sid}/Messages"
        at = _twilio_date(sms.date_sent)
        return {
            "sid": sms.sid, "account_sid": self.account_sid, "to": sms.to, "from": sms.from_,
            "body": sms.body, "status": "sent", "num_segments": "1",
            "direction": "outbound-api", "api_version": "2010-04-01", "date_created": at,
            "date_updated": at, "date_sent": at, "price": None, "price_unit": "USD",
            "error_code": None, "error_message": None, "messaging_service_sid": None,
            "num_media": "0", "uri": f"{path}/{sms.sid}.json", "subresource_uris": {}}

    def bodies_to(self, to: str) -> list[str]:
        with self._lock:
            return [m.body for m in self.messages if m.to == to]

    def down(self) -> None:
        self.release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


@pytest.fixture
def twilio_endpoint() -> Iterator[TwilioEndpoint]:
    endpoint = TwilioEndpoint("AC" + uuid.uuid4().hex, secrets.token_hex(16))
    endpoint.up()
    try:
        yield endpoint
    finally:
        endpoint.down()


# ---------------------------------------------------------------------------- SMTP


class _Handler:
    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.sink.lock:
            if self.sink.defer_next > 0:
                self.sink.defer_next -= 1
                return "451 4.3.0 Mail server temporarily unavailable"
            message = message_from_bytes(envelope.content, policy=policy.default)
            self.sink.messages.append(message)  # type: ignore[arg-type]
        return "250 OK"


class SmtpSink:
    """A real SMTP server (aiosmtpd) that keeps what it receives. It offers STARTTLS with a
    self-signed certificate for 127.0.0.1 (``ca_file`` trusts it); plain sessions work too."""

    def __init__(self, tls: tuple[str, str] | None = None) -> None:
        self.port = free_port()
        self.messages: list[EmailMessage] = []
        self.defer_next = 0
        self.lock = threading.Lock()
        self.ca_file = tls[0] if tls else ""
        self._tls = tls
        self._controller: Controller | None = None

    def up(self) -> None:
        extra: dict[str, Any] = {}
        if self._tls:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(*self._tls)
            extra["tls_context"] = context
        self._controller = Controller(_Handler(self), hostname="127.0.0.1", port=self.port,
                                      **extra)
        self._controller.start()

    def down(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def bodies_to(self, address: str) -> list[str]:
        with self.lock:
            return [str(m.get_content()) for m in self.messages if m["To"] == address]


@pytest.fixture(scope="session")
def smtp_tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1 and its key (PEM files)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(hours=1)).not_valid_after(now + timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    folder = tmp_path_factory.mktemp("smtp-tls")
    cert_file, key_file = folder / "relay.pem", folder / "relay.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_file), str(key_file)


@pytest.fixture
def smtp_sink(smtp_tls_files: tuple[str, str]) -> Iterator[SmtpSink]:
    sink = SmtpSink(smtp_tls_files)
    sink.up()
    try:
        yield sink
    finally:
        sink.down()


# ---------------------------------------------------------------------------- token layer


@dataclass(frozen=True)
class ServiceTokens:
    library: TokenLibrary
    so_pin: str
    sealer: TokenSealer


@pytest.fixture
def service_tokens(softhsm_library: TokenLibrary) -> ServiceTokens:
    """A SoftHSM2 module with the service's envelope token and AES key provisioned."""
    so_pin = secrets.token_hex(8)
    pin = generate_pin(8)
    provision_envelope_key(softhsm_library, token_label="tawqi-delivery", token_pin=pin,
                           key_label="secret-envelope-v1", so_pin=so_pin)
    return ServiceTokens(softhsm_library, so_pin,
                         TokenSealer(softhsm_library, "tawqi-delivery", pin,
                                     "secret-envelope-v1"))


class KeyOnlyPersonaliser:
    """Initialises the token and generates the holder's key on it, without a CA (for the
    state-machine tests; the pki-backed personaliser is tested in test_flow)."""

    def __init__(self, tokens: TokenLibrary, so_pin: str) -> None:
        self.tokens = tokens
        self.so_pin = so_pin
        self.calls = 0

    def personalise(self, session: Session, clock: Clock, *, holder: HolderProfile,
                    token_label: str, pin: str, actor: str) -> PersonalisedToken:
        self.calls += 1
        self.tokens.init_token(token_label, self.so_pin, pin)
        self.tokens.generate_key_pair(token_label, pin, key_type="EC-P256",
                                      key_label="signing", key_id=b"\x01")
        return PersonalisedToken(token_label, secrets.token_hex(8), None)


# ---------------------------------------------------------------------------- committed work


@pytest.fixture
def sessions(db_engine: Engine) -> sessionmaker[Session]:
    """Real transactions on the test database (for the worker and the flows that commit).
    Tests using it must not also hold the rolled-back ``session`` (SQLite has one writer)."""
    factory = make_session_factory(db_engine)
    # Earlier tests may have left messages behind: keep them away from this test's worker.
    with transaction(factory) as db:
        db.execute(update(OutboxMessage)
                   .where(OutboxMessage.status.in_((OUTBOX_PENDING, OUTBOX_SENDING)))
                   .values(status=OUTBOX_DEAD, last_error="left by an earlier test"))
    return factory


@pytest.fixture(params=["sqlite", "postgresql"])
def bare_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An empty database (nothing migrated) on SQLite or a fresh PostgreSQL one, dropped
    after: for the migration tests that build an earlier schema first."""
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'm.db'}")
        yield engine
        engine.dispose()
        return
    server = request.getfixturevalue("postgres_server_url")
    name, engine = _fresh_postgres(server)
    try:
        yield engine
    finally:
        engine.dispose()
        _drop_postgres(server, name)

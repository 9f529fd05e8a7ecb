"""Factories and local providers for the delivery tests.

``twilio_endpoint`` is a local HTTP server speaking the part of Twilio's REST API the SDK
uses to send an SMS; ``smtp_sink`` a real aiosmtpd server. Both can go down and come back.
"""

from __future__ import annotations

import base64
import itertools
import json
import secrets
import socket
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from core.clock import Clock
from core.db import make_session_factory, transaction
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


@dataclass
class TwilioEndpoint:
    """POST /2010-04-01/Accounts/{sid}/Messages.json → 201 JSON, as Twilio answers."""

    account_sid: str
    auth_token: str
    port: int = field(default_factory=free_port)
    messages: list[SentSms] = field(default_factory=list)
    fail_next: int = 0  # answer 503 to that many requests (the provider is in trouble)
    requests_seen: int = 0
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
                self.wfile.write(data)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                with endpoint._lock:
                    endpoint.requests_seen += 1
                    failing = endpoint.fail_next > 0
                    if failing:
                        endpoint.fail_next -= 1
                expected = "Basic " + base64.b64encode(
                    f"{endpoint.account_sid}:{endpoint.auth_token}".encode()).decode()
                path = f"/2010-04-01/Accounts/{endpoint.account_sid}/Messages.json"
                if self.path != path:
                    self._reply(404, {"code": 20404, "message": "not found", "status": 404})
                    return
                if self.headers.get("Authorization") != expected:
                    self._reply(401, {"code": 20003, "message": "Authenticate", "status": 401})
                    return
                if failing:
                    self._reply(503, {"code": 20503, "message": "Service unavailable",
                                      "status": 503})
                    return
                if not form.get("To", "").startswith("+"):
                    self._reply(400, {"code": 21211, "message": "Invalid 'To' Phone Number",
                                      "status": 400})
                    return
                sid = "SM" + uuid.uuid4().hex
                with endpoint._lock:
                    endpoint.messages.append(SentSms(sid, form["To"], form.get("From", ""),
                                                     form.get("Body", "")))
                self._reply(201, {
                    "sid": sid, "account_sid": endpoint.account_sid, "to": form["To"],
                    "from": form.get("From"), "body": form.get("Body"), "status": "queued",
                    "num_segments": "1", "direction": "outbound-api", "api_version": "2010-04-01",
                    "date_created": "Mon, 16 Mar 2026 09:30:00 +0000",
                    "date_updated": "Mon, 16 Mar 2026 09:30:00 +0000", "date_sent": None,
                    "price": None, "price_unit": "USD", "error_code": None,
                    "error_message": None, "messaging_service_sid": None, "num_media": "0",
                    "uri": f"{path[:-5]}/{sid}.json", "subresource_uris": {}})

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def down(self) -> None:
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
    """A real SMTP server (aiosmtpd) that keeps what it receives."""

    def __init__(self) -> None:
        self.port = free_port()
        self.messages: list[EmailMessage] = []
        self.defer_next = 0
        self.lock = threading.Lock()
        self._controller: Controller | None = None

    def up(self) -> None:
        self._controller = Controller(_Handler(self), hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def down(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def bodies_to(self, address: str) -> list[str]:
        with self.lock:
            return [str(m.get_content()) for m in self.messages if m["To"] == address]


@pytest.fixture
def smtp_sink() -> Iterator[SmtpSink]:
    sink = SmtpSink()
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

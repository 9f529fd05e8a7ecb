"""Whole runs on a fresh database: real CA (pki) and tokens (SoftHSM2), real providers
(the Twilio SDK against a local Messages API, an aiosmtpd server), outages that recover, a
token handed over whose PIN signs, a PIN change, a lockout, a reset; and then the database
dump and every log line searched for each PIN and code that was sent."""

from __future__ import annotations

import base64
import logging
import re
import secrets
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session, sessionmaker

from core.clock import FrozenClock
from core.db import Base, make_session_factory, transaction
from delivery import batches, pins, requests, reset
from delivery.backends import SmtpEmailBackend, TwilioSmsBackend
from delivery.envelopes import TokenSealer, provision_envelope_key
from delivery.errors import (
    PinLocked,
    PinRejected,
    ResetChallengeClosed,
    ResetChallengeInvalid,
    ResetChallengeNotFound,
    ResetRateLimited,
)
from delivery.models import (
    ACTIVE,
    CertificateRequest,
    OutboxMessage,
    PinAttempt,
    PinResetChallenge,
    SecretEnvelope,
)
from delivery.outbox import OutboxWorker
from delivery.personalisation import TokenPersonaliser, personalise_request
from delivery.pins import DatabasePinAttemptStore
from delivery.policy import DeliveryPolicy, RetryPolicy
from hsm import TokenLibrary, generate_pin
from pki import ca
from pki.issuance import HOLDER_KEY_LABEL
from pki.profiles import DOCUMENTATION_POLICY_OID, Profile
from tests.conftest import FROZEN_AT, prepared_engine
from tests.delivery.conftest import (
    COMMUNE_A,
    COMMUNE_B,
    SmtpSink,
    TwilioEndpoint,
    make_contact,
    make_holder,
)

POLICY = DeliveryPolicy()
RETRY = RetryPolicy(max_attempts=8, base_seconds=30, max_seconds=900, lease_seconds=60)
SECRET_RUN = re.compile(r"(?<!\d)(\d{6,8})(?!\d)")


@pytest.fixture(params=["sqlite", "postgresql"])
def flow_engine(request: pytest.FixtureRequest, tmp_path: Path,
                caplog: pytest.LogCaptureFixture) -> Iterator[Engine]:
    """A fresh, migrated database per run (so its dump is this run's alone), created with
    every logger at DEBUG, SQL statements and their parameters included."""
    caplog.set_level(logging.DEBUG)
    levels = {
        "sqlalchemy.engine": logging.INFO,  # every statement with its parameters
        # The receiving mail server's own wire trace is the holder's mailbox side, which
        # rightly receives the PIN (aiosmtpd logs every DATA line at DEBUG): not ours.
        "mail.log": logging.INFO,
    }
    saved = {name: logging.getLogger(name).level for name in levels}
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
    try:
        with prepared_engine(request, tmp_path / "flow.db") as engine:
            yield engine
    finally:
        for logger_name, level in saved.items():
            logging.getLogger(logger_name).setLevel(level)


@dataclass
class Run:
    engine: Engine
    sessions: sessionmaker[Session]
    clock: FrozenClock
    tokens: TokenLibrary
    so_pin: str
    sealer: TokenSealer
    personaliser: TokenPersonaliser
    twilio: TwilioEndpoint
    smtp: SmtpSink
    worker: OutboxWorker
    secrets_sent: set[str] = field(default_factory=set)

    def work(self, rounds: int = 12) -> None:
        """Run the worker until the outbox is empty, moving time past each backoff."""
        for _ in range(rounds):
            self.worker.drain()
            with transaction(self.sessions) as db:
                waiting = db.scalar(select(OutboxMessage.id).where(
                    OutboxMessage.status.in_(("pending", "sending"))).limit(1))
            if waiting is None:
                return
            self.clock.advance(timedelta(minutes=20))
        raise AssertionError("the outbox did not drain")

    def sms_to(self, number: str) -> list[str]:
        return [m.body for m in self.twilio.messages if m.to == number]

    def secret_in(self, body: str) -> str:
        found = SECRET_RUN.findall(body)
        assert found, body
        self.secrets_sent.update(found)
        return str(found[0])


@pytest.fixture
def run(flow_engine: Engine, softhsm_conf: Path, softhsm_module_path: str,
        twilio_endpoint: TwilioEndpoint, smtp_sink: SmtpSink) -> Iterator[Run]:
    clock = FrozenClock(FROZEN_AT)
    sessions = make_session_factory(flow_engine)
    store = DatabasePinAttemptStore(flow_engine, clock)
    tokens = TokenLibrary(softhsm_module_path, attempts=store, max_attempts=5)
    so_pin, envelope_pin, ca_pin, root_pin = (secrets.token_hex(8), generate_pin(8),
                                              generate_pin(8), generate_pin(8))
    provision_envelope_key(tokens, token_label="tawqi-delivery", token_pin=envelope_pin,
                           key_label="secret-envelope-v1", so_pin=so_pin)
    sealer = TokenSealer(tokens, "tawqi-delivery", envelope_pin, "secret-envelope-v1")
    profile = Profile(public_url="http://pki.tawqi.ma",
                      policy_oid=DOCUMENTATION_POLICY_OID)
    with transaction(sessions) as db:
        ca.init_ca(db, clock, tokens, profile, root_token="tawqi-root", ca_token="tawqi-ca",
                   so_pin=so_pin, pin=ca_pin, root_pin=root_pin, actor="test")
    with transaction(sessions) as db:
        authority = ca.load_authority(db, tokens, profile, pin=ca_pin)
    worker = OutboxWorker(
        sessions, clock, retry=RETRY, sealer=sealer,
        sms=TwilioSmsBackend(twilio_endpoint.account_sid, twilio_endpoint.auth_token,
                             "+212522000000", base_url=twilio_endpoint.base_url, timeout=5),
        email=SmtpEmailBackend("127.0.0.1", smtp_sink.port, sender="tawqi@tawqi.test",
                               ca_file=smtp_sink.ca_file, timeout=5))
    personaliser = TokenPersonaliser(tokens, so_pin=so_pin, authority=authority)
    try:
        yield Run(flow_engine, sessions, clock, tokens, so_pin, sealer, personaliser,
                  twilio_endpoint, smtp_sink, worker)
    finally:
        tokens.close()
        store.dispose()


def _prepare(run: Run, form: str, commune: str, contact_id: int) -> tuple[int, str, str]:
    """Register a holder, request, approve and personalise; return (request, mobile, email)."""
    with transaction(run.sessions) as db:
        holder = make_holder(db, run.clock, commune=commune)
        request = requests.submit_request(db, run.clock, contact_id=contact_id,
                                          holder_id=holder.id, token_form=form,
                                          actor="contact")
        requests.approve_request(db, run.clock, request.id, actor="ra-operator",
                                 identity_check="CIN and council minutes checked")
        personalise_request(db, run.clock, request.id, personaliser=run.personaliser,
                            sealer=run.sealer, actor="operator", policy=POLICY)
        return request.id, holder.mobile, holder.email


def _sign_and_verify(run: Run, request_id: int, pin: str) -> None:
    with transaction(run.sessions) as db:
        request = db.get_one(CertificateRequest, request_id)
        label = str(request.token_label)
    key = run.tokens.private_key(label, pin, key_label=HOLDER_KEY_LABEL)
    certificate = x509.load_der_x509_certificate(
        run.tokens.read_certificate(label, key_id=key.key_id) or b"")
    document = f"permis de construire {uuid.uuid4()}".encode()
    signature = key.sign(document, ec.ECDSA(hashes.SHA256()))
    public = certificate.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    public.verify(signature, document, ec.ECDSA(hashes.SHA256()))
    assert "IDCMA-" in certificate.subject.rfc4514_string()


def _dump(run: Run, tmp_path: Path) -> str:
    """Every row of every table, bytes as base64; plus pg_dump's output or SQLite's files."""
    parts = []
    with run.engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            for row in conn.execute(table.select()):
                parts.append(" ".join(
                    base64.b64encode(v).decode() if isinstance(v, bytes | memoryview)
                    else str(v) for v in row))
    url = run.engine.url
    if url.get_backend_name() == "sqlite":
        path = Path(str(url.database))
        for candidate in (path, Path(f"{path}-wal")):
            if candidate.exists():
                parts.append(candidate.read_bytes().decode("latin-1"))
    else:
        plain = make_url(url).set(drivername="postgresql")
        dump = subprocess.run(["pg_dump", "--data-only",
                               plain.render_as_string(hide_password=False)],
                              capture_output=True, text=True, check=True, timeout=120)
        parts.append(dump.stdout)
    return "\n".join(parts)


def _leaks(haystack: str, secrets_sent: set[str]) -> set[str]:
    return {s for s in secrets_sent if re.search(rf"(?<!\d){s}(?!\d)", haystack)}


def test_from_request_to_signature_with_outages_and_no_pin_left_behind(
        run: Run, tmp_path: Path, caplog: pytest.LogCaptureFixture,
        capfd: pytest.CaptureFixture[str]) -> None:
    with transaction(run.sessions) as db:
        contact_id = make_contact(db, run.clock).id
    first, first_mobile, first_email = _prepare(run, "device", COMMUNE_A, contact_id)
    second, second_mobile, _ = _prepare(run, "device", COMMUNE_B, contact_id)
    hosted, hosted_mobile, hosted_email = _prepare(run, "hosted", COMMUNE_A, contact_id)

    with transaction(run.sessions) as db:
        batch = batches.prepare_batch(db, run.clock, "01.051", actor="operator")
        batches.dispatch_batch(db, run.clock, batch.id, tracking_number="EE123456785MA",
                               actor="operator", policy=POLICY)
        batch_id = batch.id
    run.work()
    assert run.twilio.messages == []  # nothing for holders yet: PINs wait for the hand-over
    assert len(run.smtp.messages) == 1  # the contact's dispatch notice

    run.clock.advance(timedelta(days=2))
    with transaction(run.sessions) as db:
        batches.receive_batch(db, run.clock, batch_id, actor="contact", contact_id=contact_id)
        for request_id in (first, second):
            batches.record_handover(db, run.clock, request_id, handed_to="the holder",
                                    acknowledgement=f"receipt {request_id}", actor="contact",
                                    contact_id=contact_id, policy=POLICY)
        requests.activate_request(db, run.clock, hosted, actor="operator")

    # Both providers fail at first: Twilio answers 503 then is unreachable, SMTP is
    # down; then both come back. Every message arrives exactly once.
    run.twilio.fail_next = 3
    run.smtp.down()
    run.worker.drain()
    run.clock.advance(timedelta(minutes=5))
    run.twilio.down()
    run.worker.drain()
    with transaction(run.sessions) as db:
        retried = db.scalars(select(OutboxMessage).where(
            OutboxMessage.template == "pin.initial")).all()
        assert len(retried) == 6 and all(m.attempts == 2 and m.status == "pending"
                                         for m in retried)
    run.twilio.up()
    run.smtp.up()
    run.work()
    for mobile in (first_mobile, second_mobile, hosted_mobile):
        assert len(run.sms_to(mobile)) == 1
    assert len(run.twilio.messages) == 3
    assert len(run.smtp.messages) == 4

    [sms] = run.sms_to(first_mobile)
    pin = run.secret_in(sms)
    [mail] = run.smtp.bodies_to(first_email)
    assert pin in mail and "Changez ce code" in mail and "تغييره" in mail
    hosted_pin = run.secret_in(run.sms_to(hosted_mobile)[0])
    run.secret_in(run.sms_to(second_mobile)[0])
    assert pin in run.smtp.bodies_to(first_email)[0]
    assert hosted_pin in run.smtp.bodies_to(hosted_email)[0]
    with transaction(run.sessions) as db:
        envelopes_left = db.scalars(select(SecretEnvelope).where(
            SecretEnvelope.ciphertext.is_not(None))).all()
        assert envelopes_left == []  # every PIN destroyed once both channels sent it
        assert db.get_one(CertificateRequest, first).pin_sent_at is not None

    # The token handed over signs with the PIN that came by SMS.
    _sign_and_verify(run, first, pin)
    _sign_and_verify(run, hosted, hosted_pin)

    # First use: terms, activation, PIN change (a wrong current PIN is counted).
    with transaction(run.sessions) as db:
        requests.accept_terms(db, run.clock, first, version="2026-01", actor="holder")
        requests.activate_request(db, run.clock, first, actor="holder")
    wrong = "".join(reversed(pin)) if pin != pin[::-1] else "918273"
    with pytest.raises(PinRejected) as err:
        pins.change_pin(run.sessions, run.clock, run.tokens, first, old_pin=wrong,
                        new_pin="493817", actor="holder")
    assert err.value.extras["attempts_left"] == 4
    new_pin = generate_pin(6)
    run.secrets_sent.add(new_pin)
    pins.change_pin(run.sessions, run.clock, run.tokens, first, old_pin=pin, new_pin=new_pin,
                    actor="holder")
    with transaction(run.sessions) as db:
        assert requests.signing_readiness(db, first).ready
        assert db.get_one(CertificateRequest, first).status == ACTIVE
    _sign_and_verify(run, first, new_pin)

    # Five wrong PINs lock the token; the count lives in the database.
    label = _label(run, first)
    for _ in range(5):
        with pytest.raises((PinRejected, PinLocked)):
            pins.change_pin(run.sessions, run.clock, run.tokens, first, old_pin=wrong,
                            new_pin="493817", actor="holder")
    with pytest.raises(PinLocked):
        pins.change_pin(run.sessions, run.clock, run.tokens, first, old_pin=new_pin,
                        new_pin="493817", actor="holder")
    with transaction(run.sessions) as db:
        assert db.get_one(PinAttempt, label).failures == 5

    # Reset: a code by SMS, a wrong guess (counted), the right one; a new PIN by SMS only.
    with transaction(run.sessions) as db:
        holder_cin = _cin(db, first)
        challenge = reset.request_pin_reset(db, run.clock, run.sealer, cin=holder_cin.lower(),
                                            actor="holder", policy=POLICY)
    run.work()
    code = run.secret_in(run.sms_to(first_mobile)[-1])
    bad_code = f"{(int(code) + 1) % 10 ** len(code):0{len(code)}d}"
    with pytest.raises(ResetChallengeInvalid) as invalid:
        reset.confirm_pin_reset(run.sessions, run.clock, run.tokens, run.sealer,
                                challenge_id=challenge.challenge_id, cin=holder_cin,
                                code=bad_code, so_pin=run.so_pin, actor="holder",
                                policy=POLICY)
    assert invalid.value.extras["attempts_left"] == POLICY.otp_max_attempts - 1
    outcome = reset.confirm_pin_reset(run.sessions, run.clock, run.tokens, run.sealer,
                                      challenge_id=challenge.challenge_id, cin=holder_cin,
                                      code=code, so_pin=run.so_pin, actor="holder",
                                      policy=POLICY)
    assert outcome.request_id == first
    with pytest.raises(ResetChallengeClosed):  # single use
        reset.confirm_pin_reset(run.sessions, run.clock, run.tokens, run.sealer,
                                challenge_id=challenge.challenge_id, cin=holder_cin,
                                code=code, so_pin=run.so_pin, actor="holder", policy=POLICY)
    run.work()
    reset_pin = run.secret_in(run.sms_to(first_mobile)[-1])
    notice = run.smtp.bodies_to(first_email)[-1]
    assert "réinitialisé" in notice and reset_pin not in notice
    with transaction(run.sessions) as db:
        assert db.get(PinAttempt, label) is None  # the SO reset cleared the lockout
        assert not requests.signing_readiness(db, first).ready  # change it again first
    _sign_and_verify(run, first, reset_pin)

    # Nothing of any PIN or code in the database (rows, pg_dump / SQLite files) or the logs.
    assert len(run.secrets_sent) == 6  # three initial PINs, a new one, a code, a reset PIN
    assert _leaks(_dump(run, tmp_path), run.secrets_sent) == set()
    out, err_text = capfd.readouterr()
    assert "INSERT INTO delivery_secret_envelope" in caplog.text  # SQL and parameters logged
    leaking = [f"{r.name}: {r.getMessage()[:300]}" for r in caplog.records
               if _leaks(r.getMessage(), run.secrets_sent)]
    assert leaking == []
    assert _leaks(caplog.text + out + err_text, run.secrets_sent) == set()


def _label(run: Run, request_id: int) -> str:
    with transaction(run.sessions) as db:
        return str(db.get_one(CertificateRequest, request_id).token_label)


def _cin(db: Session, request_id: int) -> str:
    return str(db.execute(text("SELECT h.cin FROM delivery_holder h JOIN delivery_request r "
                               "ON r.holder_id = h.id WHERE r.id = :id"),
                          {"id": request_id}).scalar_one())


def test_reset_codes_expire_and_are_rate_limited(run: Run) -> None:
    with transaction(run.sessions) as db:
        contact_id = make_contact(db, run.clock).id
    request_id, mobile, _ = _prepare(run, "hosted", COMMUNE_A, contact_id)
    with transaction(run.sessions) as db:
        requests.activate_request(db, run.clock, request_id, actor="operator")
        cin = _cin(db, request_id)
        first = reset.request_pin_reset(db, run.clock, run.sealer, cin=cin, actor="holder",
                                        policy=POLICY)
    run.work()
    code = run.secret_in(run.sms_to(mobile)[-1])
    run.clock.advance(timedelta(minutes=POLICY.otp_ttl_minutes + 1))
    with pytest.raises(ResetChallengeClosed):
        reset.confirm_pin_reset(run.sessions, run.clock, run.tokens, run.sealer,
                                challenge_id=first.challenge_id, cin=cin, code=code,
                                so_pin=run.so_pin, actor="holder", policy=POLICY)
    with transaction(run.sessions) as db:
        second = reset.request_pin_reset(db, run.clock, run.sealer, cin=cin, actor="holder",
                                         policy=POLICY)
    run.work()
    code = run.secret_in(run.sms_to(mobile)[-1])
    with pytest.raises(ResetChallengeNotFound):  # another CIN: not its challenge, no try
        reset.confirm_pin_reset(run.sessions, run.clock, run.tokens, run.sealer,
                                challenge_id=second.challenge_id, cin="ZZ999999", code=code,
                                so_pin=run.so_pin, actor="holder", policy=POLICY)
    for _ in range(POLICY.otp_max_attempts - 1):
        with pytest.raises(ResetChallengeInvalid):
            reset.confirm_pin_reset(run.sessions, run.clock, run.tokens, run.sealer,
                                    challenge_id=second.challenge_id, cin=cin, code="000000",
                                    so_pin=run.so_pin, actor="holder", policy=POLICY)
    with pytest.raises(ResetChallengeClosed):  # the last allowed guess closes it
        reset.confirm_pin_reset(run.sessions, run.clock, run.tokens, run.sealer,
                                challenge_id=second.challenge_id, cin=cin, code="000001",
                                so_pin=run.so_pin, actor="holder", policy=POLICY)
    with pytest.raises(ResetChallengeClosed):  # even the right code, now
        reset.confirm_pin_reset(run.sessions, run.clock, run.tokens, run.sealer,
                                challenge_id=second.challenge_id, cin=cin, code=code,
                                so_pin=run.so_pin, actor="holder", policy=POLICY)
    with transaction(run.sessions) as db:
        reset.request_pin_reset(db, run.clock, run.sealer, cin=cin, actor="holder",
                                policy=POLICY)
    with pytest.raises(ResetRateLimited), transaction(run.sessions) as db:
        reset.request_pin_reset(db, run.clock, run.sealer, cin=cin, actor="holder",
                                policy=POLICY)


def test_a_reset_challenge_belongs_to_its_holder(run: Run) -> None:
    """Holder A, who learnt holder B's challenge id, gets "not found" and uses up none of
    B's attempts; B's code still works."""
    with transaction(run.sessions) as db:
        contact_id = make_contact(db, run.clock).id
    a_request, _a_mobile, _ = _prepare(run, "hosted", COMMUNE_A, contact_id)
    b_request, b_mobile, _ = _prepare(run, "hosted", COMMUNE_A, contact_id)
    with transaction(run.sessions) as db:
        for request_id in (a_request, b_request):
            requests.activate_request(db, run.clock, request_id, actor="operator")
        a_cin, b_cin = _cin(db, a_request), _cin(db, b_request)
        b_challenge = reset.request_pin_reset(db, run.clock, run.sealer, cin=b_cin,
                                              actor="holder", policy=POLICY)
    run.work()
    code = run.secret_in(run.sms_to(b_mobile)[-1])
    for guess in ("000000", "111111", code, *("22222" + str(i) for i in range(10))):
        with pytest.raises(ResetChallengeNotFound):
            reset.confirm_pin_reset(run.sessions, run.clock, run.tokens, run.sealer,
                                    challenge_id=b_challenge.challenge_id, cin=a_cin,
                                    code=guess, so_pin=run.so_pin, actor="holder-a",
                                    policy=POLICY)
    with transaction(run.sessions) as db:
        row = db.get_one(PinResetChallenge, b_challenge.challenge_id)
        assert (row.attempts, row.status) == (0, "open")
    outcome = reset.confirm_pin_reset(run.sessions, run.clock, run.tokens, run.sealer,
                                      challenge_id=b_challenge.challenge_id, cin=b_cin,
                                      code=code, so_pin=run.so_pin, actor="holder-b",
                                      policy=POLICY)
    assert outcome.request_id == b_request

"""The outbox and its worker against real providers: the Twilio SDK talking to a local
endpoint of Twilio's Messages API, and smtplib talking to an aiosmtpd server."""

from __future__ import annotations

import logging
import threading
import uuid
from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core.clock import FrozenClock
from core.db import is_postgres, transaction
from delivery import outbox
from delivery.backends import (
    ConsoleEmailBackend,
    ConsoleSmsBackend,
    OutgoingEmail,
    OutgoingSms,
    PermanentSendError,
    SmtpEmailBackend,
    TransientSendError,
    TwilioSmsBackend,
)
from delivery.models import (
    OUTBOX_DEAD,
    OUTBOX_PENDING,
    OUTBOX_SENT,
    OutboxMessage,
    SecretEnvelope,
)
from delivery.outbox import Notification, OutboxWorker
from delivery.policy import RetryPolicy
from tests.delivery.conftest import SmtpSink, TwilioEndpoint, make_holder, random_mobile

RETRY = RetryPolicy(max_attempts=4, base_seconds=30, max_seconds=600, lease_seconds=60)


def twilio(endpoint: TwilioEndpoint) -> TwilioSmsBackend:
    return TwilioSmsBackend(endpoint.account_sid, endpoint.auth_token, "+212522000000",
                            base_url=endpoint.base_url, timeout=5)


def smtp(sink: SmtpSink) -> SmtpEmailBackend:
    """STARTTLS (the default) to the sink, trusting its self-signed certificate."""
    return SmtpEmailBackend("127.0.0.1", sink.port, sender="tawqi@tawqi.test",
                            ca_file=sink.ca_file, timeout=5)


def notice(recipient: str, key: str) -> Notification:
    """A secret-free email (secret-bearing messages are exercised in test_flow)."""
    return Notification(channel="email", recipient=recipient, template="batch.dispatched",
                        dedupe_key=key,
                        params={"contact_name": "Samira", "count": 2,
                                "province_fr": "Al Hoceima", "province_ar": "الحسيمة",
                                "tracking_number": "EE123456785MA"})


def _status(sessions: sessionmaker[Session], key: str) -> OutboxMessage:
    with transaction(sessions) as db:
        return db.scalars(select(OutboxMessage).where(OutboxMessage.dedupe_key == key)).one()


def test_notifications_validate_on_construction() -> None:
    with pytest.raises(ValueError, match="channel"):
        Notification(channel="fax", recipient="x", template="pin.initial", dedupe_key="k")
    with pytest.raises(ValueError, match="template"):
        Notification(channel="sms", recipient="x", template="nope", dedupe_key="k")
    with pytest.raises(ValueError, match="envelope"):  # a PIN template needs its envelope
        Notification(channel="sms", recipient="x", template="reset.code", dedupe_key="k",
                     params={"ttl_minutes": 10})
    with pytest.raises(ValueError, match="no sms text"):
        Notification(channel="sms", recipient="x", template="batch.dispatched", dedupe_key="k")
    with pytest.raises(ValueError, match="misses"):
        Notification(channel="email", recipient="x", template="batch.dispatched",
                     dedupe_key="k", params={})
    with pytest.raises(ValueError, match="secrets"):
        Notification(channel="sms", recipient="x", template="reset.code", dedupe_key="k",
                     envelope_id="e", params={"ttl_minutes": 10, "otp": "123456"})


def test_enqueue_is_idempotent_on_its_key(session: Session, clock: FrozenClock) -> None:
    first = outbox.enqueue(session, clock, notice("a@example.ma", "dedupe-1"))
    again = outbox.enqueue(session, clock, notice("b@example.ma", "dedupe-1"))
    assert first.id == again.id and again.recipient == "a@example.ma"
    assert first.status == OUTBOX_PENDING and first.attempts == 0


def test_smtp_delivery_through_a_real_server(sessions: sessionmaker[Session],
                                             clock: FrozenClock, smtp_sink: SmtpSink) -> None:
    with transaction(sessions) as db:
        outbox.enqueue(db, clock, notice("contact@interieur.gov.ma", "smtp-1"))
    worker = OutboxWorker(sessions, clock, sms=ConsoleSmsBackend(), email=smtp(smtp_sink),
                          sealer=None, retry=RETRY)
    report = worker.drain()
    assert report.sent == 1
    [message] = smtp_sink.messages
    assert message["To"] == "contact@interieur.gov.ma"
    assert "EE123456785MA" in str(message["Subject"])
    body = str(message.get_content())
    assert "Numéro de suivi" in body and "رقم التتبع" in body
    row = _status(sessions, "smtp-1")
    assert row.status == OUTBOX_SENT and row.provider_ref == str(message["Message-ID"])
    assert row.sent_at is not None and row.attempts == 1


def test_twilio_sdk_reaches_the_local_messages_api(twilio_endpoint: TwilioEndpoint) -> None:
    backend = twilio(twilio_endpoint)
    sid = backend.send(OutgoingSms("+212661234567", "Bonjour / مرحبا", "ref-1"))
    [sms] = twilio_endpoint.messages
    assert sid == sms.sid and sid.startswith("SM")
    assert (sms.to, sms.from_, sms.body) == ("+212661234567", "+212522000000",
                                             "Bonjour / مرحبا")
    with pytest.raises(PermanentSendError, match="21211"):
        backend.send(OutgoingSms("not-a-number", "x", "ref-2"))
    twilio_endpoint.fail_next = 1
    with pytest.raises(TransientSendError, match="503"):
        backend.send(OutgoingSms("+212661234567", "x", "ref-3"))
    twilio_endpoint.down()
    with pytest.raises(TransientSendError, match="unreachable"):
        backend.send(OutgoingSms("+212661234567", "x", "ref-4"))
    wrong = TwilioSmsBackend(twilio_endpoint.account_sid, "bad-token", "+212522000000",
                             base_url=twilio_endpoint.base_url, timeout=5)
    twilio_endpoint.up()
    with pytest.raises(TransientSendError, match="401"):  # configuration: retry, not drop
        wrong.send(OutgoingSms("+212661234567", "x", "ref-5"))
    assert len(twilio_endpoint.messages) == 1


def test_smtp_errors_are_classified(smtp_sink: SmtpSink) -> None:
    backend = smtp(smtp_sink)
    smtp_sink.defer_next = 1
    with pytest.raises(TransientSendError, match="451"):
        backend.send(OutgoingEmail("a@example.ma", "s", "b", "r1"))
    smtp_sink.down()
    with pytest.raises(TransientSendError, match="unreachable"):
        backend.send(OutgoingEmail("a@example.ma", "s", "b", "r2"))
    assert smtp_sink.messages == []


def test_an_smtp_outage_that_recovers_delivers_each_message_once(
        sessions: sessionmaker[Session], clock: FrozenClock, smtp_sink: SmtpSink) -> None:
    keys = [f"outage-{i}" for i in range(3)]
    with transaction(sessions) as db:
        for i, key in enumerate(keys):
            outbox.enqueue(db, clock, notice(f"c{i}@example.ma", key))
    smtp_sink.down()
    worker = OutboxWorker(sessions, clock, sms=ConsoleSmsBackend(), email=smtp(smtp_sink),
                          sealer=None, retry=RETRY)
    first = worker.drain()
    assert (first.claimed, first.sent, first.retried) == (3, 0, 3)
    assert worker.drain().claimed == 0  # backing off: nothing due yet
    row = _status(sessions, keys[0])
    assert row.status == OUTBOX_PENDING and row.attempts == 1 and "unreachable" in row.last_error
    clock.advance(timedelta(minutes=2))
    assert worker.drain().retried == 3  # still down
    smtp_sink.up()
    smtp_sink.defer_next = 1  # and one more temporary refusal when it comes back
    clock.advance(timedelta(minutes=5))
    report = worker.drain()
    assert (report.sent, report.retried) == (2, 1)
    clock.advance(timedelta(minutes=15))
    assert worker.drain().sent == 1
    received = Counter(str(m["To"]) for m in smtp_sink.messages)
    assert received == {f"c{i}@example.ma": 1 for i in range(3)}
    assert {_status(sessions, k).status for k in keys} == {OUTBOX_SENT}
    clock.advance(timedelta(hours=3))
    assert worker.drain().claimed == 0


def test_too_many_failures_make_a_message_dead_and_an_operator_can_retry_it(
        sessions: sessionmaker[Session], clock: FrozenClock, smtp_sink: SmtpSink,
        caplog: pytest.LogCaptureFixture) -> None:
    with transaction(sessions) as db:
        outbox.enqueue(db, clock, notice("late@example.ma", "dead-1"))
    smtp_sink.down()
    worker = OutboxWorker(sessions, clock, sms=ConsoleSmsBackend(), email=smtp(smtp_sink),
                          sealer=None, retry=RETRY)
    with caplog.at_level(logging.ERROR, logger="tawqi.delivery.outbox"):
        for _ in range(RETRY.max_attempts):
            worker.drain()
            clock.advance(timedelta(hours=1))
    row = _status(sessions, "dead-1")
    assert row.status == OUTBOX_DEAD and row.attempts == RETRY.max_attempts
    assert "given up" in caplog.text
    with transaction(sessions) as db:
        assert outbox.stats(db).dead >= 1
        outbox.retry_dead(db, clock, row.id, actor="operator")
    smtp_sink.up()
    assert worker.drain().sent == 1
    assert [str(m["To"]) for m in smtp_sink.messages] == ["late@example.ma"]


def test_a_crashed_workers_claim_lapses_and_another_worker_sends(
        sessions: sessionmaker[Session], clock: FrozenClock, smtp_sink: SmtpSink) -> None:
    with transaction(sessions) as db:
        outbox.enqueue(db, clock, notice("lease@example.ma", "lease-1"))
    crashed = OutboxWorker(sessions, clock, sms=ConsoleSmsBackend(), email=smtp(smtp_sink),
                           sealer=None, retry=RETRY, worker_id="crashed")
    assert len(crashed._claim()) == 1  # claimed, then the process died
    other = OutboxWorker(sessions, clock, sms=ConsoleSmsBackend(), email=smtp(smtp_sink),
                         sealer=None, retry=RETRY, worker_id="other")
    assert other.drain().claimed == 0  # the claim holds during its lease
    clock.advance(timedelta(seconds=RETRY.lease_seconds + 1))
    assert other.drain().sent == 1
    assert _status(sessions, "lease-1").attempts == 2
    assert len(smtp_sink.messages) == 1


class _CountingEmail:
    name = "counting"

    def __init__(self) -> None:
        self.sent: Counter[str] = Counter()
        self.lock = threading.Lock()

    def send(self, email: OutgoingEmail) -> str:
        with self.lock:
            self.sent[email.reference] += 1
        return email.reference


def test_several_workers_share_the_work_without_sending_twice(
        sessions: sessionmaker[Session], clock: FrozenClock) -> None:
    count = 60
    with transaction(sessions) as db:
        for i in range(count):
            outbox.enqueue(db, clock, notice(f"w{i}@example.ma", f"workers-{i}"))
        postgres = is_postgres(db)
    backend = _CountingEmail()
    workers = [OutboxWorker(sessions, clock, sms=ConsoleSmsBackend(), email=backend,
                            sealer=None, retry=RETRY, batch_size=5, worker_id=f"w{n}")
               for n in range(4)]
    reports: list[outbox.WorkerReport] = []
    threads = [threading.Thread(target=lambda w=w: reports.append(w.drain())) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sum(r.sent for r in reports) == count
    assert len(backend.sent) == count and set(backend.sent.values()) == {1}
    if postgres:  # SKIP LOCKED: the workers really worked side by side
        assert sum(1 for r in reports if r.sent) >= 2


def test_console_backends_mask_the_secret(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="tawqi.delivery.console"):
        ConsoleSmsBackend().send(OutgoingSms(random_mobile(), "PIN 48213795 / 48213795",
                                             "r", secret="48213795"))
        ConsoleEmailBackend().send(OutgoingEmail("a@b.ma", "s", "code 48213795", "r",
                                                 secret="48213795"))
    assert "48213795" not in caplog.text and caplog.text.count("••••••") == 3


def test_a_worker_without_the_envelope_key_leaves_secrets_to_others(
        sessions: sessionmaker[Session], clock: FrozenClock, smtp_sink: SmtpSink) -> None:
    with transaction(sessions) as db:
        holder = make_holder(db, clock)
        envelope = SecretEnvelope(id=str(uuid.uuid4()), purpose="reset_code",
                                  holder_id=holder.id, key_label="k", ciphertext=b"sealed",
                                  created_at=clock.now(), destroyed_reason="")
        db.add(envelope)
        db.flush()
        outbox.enqueue(db, clock, Notification(
            channel="sms", recipient=holder.mobile, template="reset.code",
            dedupe_key=f"no-sealer-{envelope.id}", params={"ttl_minutes": 10},
            envelope_id=envelope.id, holder_id=holder.id))
        outbox.enqueue(db, clock, notice("plain@example.ma", f"no-sealer-plain-{envelope.id}"))
    worker = OutboxWorker(sessions, clock, sms=ConsoleSmsBackend(), email=smtp(smtp_sink),
                          sealer=None, retry=RETRY)
    assert worker.drain().sent == 1
    assert _status(sessions, f"no-sealer-{envelope.id}").status == OUTBOX_PENDING
    assert _status(sessions, f"no-sealer-{envelope.id}").attempts == 0

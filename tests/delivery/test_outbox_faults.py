"""The outbox under provider faults: a slow provider that accepted a message its client saw
time out, outages short and long (hours and days, with a moved clock), a worker killed with
SIGKILL in the middle of a batch, and SMTP without TLS. Real parts: the Twilio SDK against the
local Messages API (which also lists messages), aiosmtpd with STARTTLS, SoftHSM2 envelopes."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from core.clock import FrozenClock, as_utc
from core.db import transaction
from delivery import envelopes, outbox
from delivery.backends import (
    AmbiguousSendError,
    ConsoleEmailBackend,
    OutgoingEmail,
    OutgoingSms,
    PlaintextRefused,
    SmtpEmailBackend,
    TransientSendError,
    TwilioSmsBackend,
)
from delivery.models import (
    ENVELOPE_RESET_CODE,
    OUTBOX_DEAD,
    OUTBOX_PENDING,
    OUTBOX_SENT,
    OutboxMessage,
    SecretEnvelope,
)
from delivery.outbox import Notification, OutboxWorker
from delivery.policy import RetryPolicy
from tests.delivery.conftest import (
    ServiceTokens,
    SmtpSink,
    TwilioEndpoint,
    make_holder,
    random_mobile,
)

RETRY = RetryPolicy(max_attempts=4, base_seconds=30, max_seconds=600, lease_seconds=60,
                    secret_retry_days=7)


def twilio(endpoint: TwilioEndpoint, timeout: float = 5) -> TwilioSmsBackend:
    return TwilioSmsBackend(endpoint.account_sid, endpoint.auth_token, "+212522000000",
                            base_url=endpoint.base_url, timeout=timeout)


def changed_notice(mobile: str, key: str) -> Notification:
    """A secret-free SMS (the notice of a contact change, sent to the old number)."""
    return Notification(channel="sms", recipient=mobile, template="contact.changed",
                        dedupe_key=key, params={
                            "name_fr": "Karim Benali", "name_ar": "كريم بنعلي",
                            "what_fr": "numéro", "what_ar": "الرقم", "at": "2026-03-16 09:30",
                            "new_hint": "••••1234", "by": "le correspondant"})


def queue_code(sessions: sessionmaker[Session], clock: FrozenClock, tokens: ServiceTokens,
               key: str) -> tuple[int, str, str, str]:
    """A reset code sealed on SoftHSM2 and queued by SMS: (message id, mobile, code, envelope)."""
    code = f"{secrets.randbelow(10**6):06d}"
    with transaction(sessions) as db:
        holder = make_holder(db, clock)
        envelope = envelopes.seal(db, clock, tokens.sealer, purpose=ENVELOPE_RESET_CODE,
                                  holder_id=holder.id, secret=code)
        message = outbox.enqueue(db, clock, Notification(
            channel="sms", recipient=holder.mobile, template="reset.code", dedupe_key=key,
            params={"ttl_minutes": 10}, envelope_id=envelope.id, holder_id=holder.id))
        return message.id, holder.mobile, code, envelope.id


def row(sessions: sessionmaker[Session], message_id: int) -> OutboxMessage:
    with transaction(sessions) as db:
        found = db.get_one(OutboxMessage, message_id)
        db.expunge(found)
        return found


def test_a_slow_provider_that_accepted_the_code_sends_it_exactly_once(
        sessions: sessionmaker[Session], clock: FrozenClock, service_tokens: ServiceTokens,
        twilio_endpoint: TwilioEndpoint) -> None:
    message_id, mobile, code, envelope_id = queue_code(sessions, clock, service_tokens,
                                                       f"slow-{secrets.token_hex(4)}")
    worker = OutboxWorker(sessions, clock, sms=twilio(twilio_endpoint, timeout=1),
                          email=ConsoleEmailBackend(), sealer=service_tokens.sealer,
                          retry=RETRY)
    twilio_endpoint.slow = 2.5  # records the message, answers after the client gave up
    report = worker.run_once()
    assert (report.claimed, report.sent, report.retried) == (1, 0, 1)
    stored = row(sessions, message_id)
    assert stored.status == OUTBOX_PENDING and stored.outcome_unknown
    assert "may have been accepted" in stored.last_error and code not in stored.last_error
    assert len(twilio_endpoint.bodies_to(mobile)) == 1

    twilio_endpoint.slow = 0
    clock.advance(timedelta(minutes=5))
    report = worker.drain()
    assert (report.sent, report.found_sent) == (1, 1)
    bodies = twilio_endpoint.bodies_to(mobile)
    assert len(bodies) == 1 and code in bodies[0]  # one SMS, never a second POST
    assert twilio_endpoint.lookups >= 1
    stored = row(sessions, message_id)
    assert stored.status == OUTBOX_SENT and (stored.provider_ref or "").startswith("SM")
    with transaction(sessions) as db:  # sent: the code's envelope is erased
        assert db.get_one(SecretEnvelope, envelope_id).ciphertext is None


def test_an_unknown_outcome_not_found_at_the_provider_is_sent_once(
        sessions: sessionmaker[Session], clock: FrozenClock,
        twilio_endpoint: TwilioEndpoint) -> None:
    mobile = random_mobile()
    with transaction(sessions) as db:
        message = outbox.enqueue(db, clock, changed_notice(mobile, f"nf-{mobile}"))
        message.outcome_unknown = True
        message.first_attempt_at = clock.now()
        message_id = message.id
    worker = OutboxWorker(sessions, clock, sms=twilio(twilio_endpoint),
                          email=ConsoleEmailBackend(), sealer=None, retry=RETRY)
    twilio_endpoint.fail_next = 1  # the lookup itself fails: nothing is sent
    assert worker.run_once().retried == 1
    assert twilio_endpoint.bodies_to(mobile) == []
    assert "lookup" in row(sessions, message_id).last_error
    clock.advance(timedelta(minutes=5))
    report = worker.drain()
    assert (report.sent, report.found_sent) == (1, 0)
    assert len(twilio_endpoint.bodies_to(mobile)) == 1


def test_a_short_twilio_outage_sends_once_without_lookups(
        sessions: sessionmaker[Session], clock: FrozenClock,
        twilio_endpoint: TwilioEndpoint) -> None:
    mobile = random_mobile()
    with transaction(sessions) as db:
        outbox.enqueue(db, clock, changed_notice(mobile, f"short-{mobile}"))
    worker = OutboxWorker(sessions, clock, sms=twilio(twilio_endpoint),
                          email=ConsoleEmailBackend(), sealer=None, retry=RETRY)
    twilio_endpoint.fail_next = 2  # Twilio answers 503: a definite refusal, not ambiguous
    for _ in range(3):
        worker.run_once()
        clock.advance(timedelta(minutes=5))
    assert len(twilio_endpoint.bodies_to(mobile)) == 1
    assert twilio_endpoint.lookups == 0


def test_twilio_refused_connection_is_not_ambiguous(twilio_endpoint: TwilioEndpoint) -> None:
    backend = twilio(twilio_endpoint)
    twilio_endpoint.down()
    with pytest.raises(TransientSendError) as caught:
        backend.find_sent("+212661234567", "x", datetime.now(UTC))
    assert "unreachable" in str(caught.value)
    with pytest.raises(TransientSendError) as sent:
        backend.send(OutgoingSms("+212661234567", "hello", "ref-1"))
    assert not isinstance(sent.value, AmbiguousSendError)


def test_a_long_outage_keeps_pin_and_code_notices_and_parks_the_others(
        sessions: sessionmaker[Session], clock: FrozenClock, service_tokens: ServiceTokens,
        twilio_endpoint: TwilioEndpoint, smtp_sink: SmtpSink) -> None:
    tag = secrets.token_hex(4)
    code_id, mobile, code, _ = queue_code(sessions, clock, service_tokens, f"long-{tag}")
    with transaction(sessions) as db:
        email_id = outbox.enqueue(db, clock, Notification(
            channel="email", recipient=f"contact-{tag}@interieur.gov.ma",
            template="batch.dispatched", dedupe_key=f"long-mail-{tag}",
            params={"contact_name": "Samira", "count": 2, "province_fr": "Al Hoceima",
                    "province_ar": "الحسيمة", "tracking_number": "EE123456785MA"})).id
    worker = OutboxWorker(
        sessions, clock, sms=twilio(twilio_endpoint), sealer=service_tokens.sealer,
        email=SmtpEmailBackend("127.0.0.1", smtp_sink.port, sender="tawqi@tawqi.test",
                               ca_file=smtp_sink.ca_file, timeout=5), retry=RETRY)
    twilio_endpoint.down()
    smtp_sink.down()
    start = clock.now()
    while clock.now() - start < timedelta(hours=3):  # three hours of outage
        worker.run_once()
        clock.advance(timedelta(minutes=7))
    stored = row(sessions, code_id)
    assert stored.status == OUTBOX_PENDING and stored.attempts > RETRY.max_attempts
    # backoff capped: the next try is never more than max_seconds (+ jitter) away
    cap = timedelta(seconds=RETRY.max_seconds * 1.2)
    assert as_utc(stored.next_attempt_at) - clock.now() <= cap
    assert row(sessions, email_id).status == OUTBOX_DEAD
    with transaction(sessions) as db:
        alarm = outbox.alert(db, clock, threshold_minutes=30)
        figures = {f.purpose: f for f in outbox.stats_by_purpose(db)}
    assert alarm.late and alarm.raised and alarm.oldest_pending_minutes >= 180
    assert figures["reset.code"].pending >= 1 and figures["batch.dispatched"].dead >= 1

    twilio_endpoint.up()
    smtp_sink.up()
    with transaction(sessions) as db:
        revived = outbox.retry_all_dead(db, clock, actor="operator",
                                        purpose="batch.dispatched")
    assert email_id in revived
    clock.advance(timedelta(minutes=15))
    worker.drain()
    assert row(sessions, code_id).status == OUTBOX_SENT
    assert row(sessions, email_id).status == OUTBOX_SENT
    bodies = twilio_endpoint.bodies_to(mobile)
    assert len(bodies) == 1 and code in bodies[0]
    assert len(smtp_sink.bodies_to(f"contact-{tag}@interieur.gov.ma")) == 1


def test_a_code_notice_is_parked_only_after_the_secret_retry_period(
        sessions: sessionmaker[Session], clock: FrozenClock, service_tokens: ServiceTokens,
        twilio_endpoint: TwilioEndpoint) -> None:
    code_id, _, _, envelope_id = queue_code(sessions, clock, service_tokens,
                                            f"week-{secrets.token_hex(4)}")
    worker = OutboxWorker(sessions, clock, sms=twilio(twilio_endpoint),
                          email=ConsoleEmailBackend(), sealer=service_tokens.sealer,
                          retry=RETRY)
    twilio_endpoint.down()
    for _ in range(RETRY.max_attempts + 2):  # more attempts than the limit, within 7 days
        worker.run_once()
        clock.advance(timedelta(hours=1))
    assert row(sessions, code_id).status == OUTBOX_PENDING
    clock.advance(timedelta(days=7))
    worker.run_once()
    assert row(sessions, code_id).status == OUTBOX_DEAD
    with transaction(sessions) as db:  # an operator's retry: max_attempts more tries
        outbox.retry_dead(db, clock, code_id, actor="operator")
    for _ in range(RETRY.max_attempts - 1):
        worker.run_once()
        clock.advance(timedelta(hours=1))
    assert row(sessions, code_id).status == OUTBOX_PENDING
    worker.run_once()
    assert row(sessions, code_id).status == OUTBOX_DEAD
    with transaction(sessions) as db:  # kept sealed, so an operator can still retry it
        assert db.get_one(SecretEnvelope, envelope_id).ciphertext is not None


def test_kill_9_in_a_batch_of_200_then_restart_delivers_each_sms_once(
        sessions: sessionmaker[Session], db_engine: Engine, tmp_path: Path,
        twilio_endpoint: TwilioEndpoint) -> None:
    now = datetime.now(UTC)
    enqueue_clock = FrozenClock(now - timedelta(seconds=1))
    mobiles = [random_mobile() for _ in range(200)]
    tag = secrets.token_hex(4)
    with transaction(sessions) as db:
        ids = [outbox.enqueue(db, enqueue_clock, changed_notice(m, f"k9-{tag}-{i}")).id
               for i, m in enumerate(mobiles)]
    twilio_endpoint.hold_after = 60  # the 61st SMS is accepted, its answer never arrives
    env = {**os.environ,
           "TAWQI_DATABASE_URL": db_engine.url.render_as_string(hide_password=False),
           "TAWQI_VAR_DIR": str(tmp_path / "var"), "TAWQI_SMS_BACKEND": "twilio",
           "TAWQI_TWILIO_ACCOUNT_SID": twilio_endpoint.account_sid,
           "TAWQI_TWILIO_AUTH_TOKEN": twilio_endpoint.auth_token,
           "TAWQI_TWILIO_FROM": "+212522000000", "TAWQI_TWILIO_BASE_URL":
           twilio_endpoint.base_url, "TAWQI_OUTBOX_LEASE_SECONDS": "60",
           "TAWQI_DELIVERY_TIMEOUT_SECONDS": "30"}
    env.pop("TAWQI_ENVELOPE_TOKEN_PIN", None)
    tawqi = str(Path(sys.executable).parent / "tawqi")
    process = subprocess.Popen([tawqi, "worker", "--batch-size", "20", "--idle", "0.2"],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert twilio_endpoint.held.wait(120), "the worker never reached the 61st message"
    finally:
        process.send_signal(signal.SIGKILL)  # only the process this test started
        process.wait(30)
    twilio_endpoint.hold_after = None
    twilio_endpoint.release.set()
    with transaction(sessions) as db:
        states = list(db.scalars(select(OutboxMessage.status)
                                 .where(OutboxMessage.id.in_(ids))))
    assert states.count(OUTBOX_SENT) <= 60 and "sending" in states  # killed mid-batch

    later = FrozenClock(datetime.now(UTC) + timedelta(seconds=121))  # leases lapsed
    worker = OutboxWorker(sessions, later, sms=twilio(twilio_endpoint),
                          email=ConsoleEmailBackend(), sealer=None, retry=RETRY,
                          batch_size=20)
    report = worker.drain()
    assert report.found_sent >= 1  # the 61st SMS: found at Twilio, not sent again
    with transaction(sessions) as db:
        states = list(db.scalars(select(OutboxMessage.status)
                                 .where(OutboxMessage.id.in_(ids))))
    assert states == [OUTBOX_SENT] * 200
    for mobile in mobiles:
        assert len(twilio_endpoint.bodies_to(mobile)) == 1, mobile


def test_smtp_never_sends_a_secret_over_plaintext_unless_allowed(smtp_sink: SmtpSink) -> None:
    secret = "493027"
    email = OutgoingEmail("k.benali@example.ma", "PIN", f"Votre PIN : {secret}", "tawqi-1",
                          secret)
    plain = SmtpEmailBackend("127.0.0.1", smtp_sink.port, sender="tawqi@tawqi.test",
                             starttls=False, timeout=5)
    with pytest.raises(PlaintextRefused) as refused:
        plain.send(email)
    assert "TAWQI_SMTP_ALLOW_PLAINTEXT" in str(refused.value)
    assert smtp_sink.messages == []
    # a notice without a secret may go over the local plain relay
    plain.send(OutgoingEmail("k.benali@example.ma", "Avis", "Sans secret", "tawqi-2"))
    allowed = SmtpEmailBackend("127.0.0.1", smtp_sink.port, sender="tawqi@tawqi.test",
                               starttls=False, allow_plaintext=True, timeout=5)
    allowed.send(email)
    # STARTTLS (the default) verifies the relay: unknown certificate, nothing sent
    untrusted = SmtpEmailBackend("127.0.0.1", smtp_sink.port, sender="tawqi@tawqi.test",
                                 timeout=5)
    with pytest.raises(TransientSendError, match="TLS"):
        untrusted.send(email)
    trusted = SmtpEmailBackend("127.0.0.1", smtp_sink.port, sender="tawqi@tawqi.test",
                               ca_file=smtp_sink.ca_file, timeout=5)
    trusted.send(email)
    assert len(smtp_sink.bodies_to("k.benali@example.ma")) == 3


def test_a_secret_refused_over_plaintext_stays_pending_with_a_clear_error(
        sessions: sessionmaker[Session], clock: FrozenClock, service_tokens: ServiceTokens,
        smtp_sink: SmtpSink) -> None:
    tag = secrets.token_hex(4)
    with transaction(sessions) as db:
        holder = make_holder(db, clock)
        envelope = envelopes.seal(db, clock, service_tokens.sealer,
                                  purpose=ENVELOPE_RESET_CODE, holder_id=holder.id,
                                  secret="731904")
        message_id = outbox.enqueue(db, clock, Notification(
            channel="email", recipient=holder.email, template="contact.code",
            dedupe_key=f"plain-{tag}", params={"name_fr": "K", "name_ar": "ك",
                                                "ttl_hours": 72},
            envelope_id=envelope.id, holder_id=holder.id)).id
    worker = OutboxWorker(
        sessions, clock, sealer=service_tokens.sealer, retry=RETRY,
        sms=twilio(TwilioEndpoint("AC0", "x")),
        email=SmtpEmailBackend("127.0.0.1", smtp_sink.port, sender="tawqi@tawqi.test",
                               starttls=False, timeout=5))
    assert worker.run_once().retried == 1
    stored = row(sessions, message_id)
    assert stored.status == OUTBOX_PENDING and "plain connection" in stored.last_error
    assert smtp_sink.messages == []

"""The worker's periodic jobs over a real CA on SoftHSM2, with a moved clock, on both
databases: three days (then a month) without an operator leave the CRL and every OCSP
answer valid and the responder certificate renewed; expiry warnings go once per
certificate and threshold even with two workers; /metrics shows the jobs.

Each test has a database of its own (migrated, reference data loaded): the jobs commit, and
two workers need two connections, so the rolled-back test session will not do.
"""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509 import ocsp as x509_ocsp
from flask import Flask
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from api.app import create_app
from api.jobs import make_scheduler
from api.runtime import Runtime
from core.clock import FrozenClock, as_utc
from core.scheduler import OUTCOME_OK, OUTCOME_SKIPPED, job_states
from delivery import contacts, holders, reminders
from delivery.backends import ConsoleInbox
from delivery.messages import render
from delivery.models import ExpiryWarning, Holder, OutboxMessage
from hsm import TokenLibrary, generate_pin
from pki import ca, crl, issuance, lifecycle
from pki.models import PROFILE_OCSP, STATUS_ISSUED, CertificateRecord, OcspRecord
from pki.profiles import HolderIdentity, Profile
from tests.api.conftest import make_settings, tick_together
from tests.conftest import FROZEN_AT
from tests.delivery.conftest import COMMUNE_A, PROVINCE, designation, registration

pytestmark = pytest.mark.hsm


@dataclass
class Service:
    runtime: Runtime
    clock: FrozenClock
    tokens: TokenLibrary

    def session(self) -> Session:
        return self.runtime.sessions()

    def issue(self, identity: HolderIdentity) -> str:
        settings = self.runtime.settings
        label, pin = f"holder-{secrets.token_hex(4)}", generate_pin(6)
        self.tokens.init_token(label, settings.so_pin, pin)
        with self.runtime.unit_of_work() as session:
            authority = ca.load_authority(session, self.tokens,
                                          Profile.from_settings(settings),
                                          pin=settings.service_pin)
            return issuance.issue_holder_certificate(
                session, self.clock, authority, self.tokens, token_label=label,
                token_pin=pin, holder=identity, actor="operator").serial

    def revoke(self, serial: str) -> None:
        settings = self.runtime.settings
        with self.runtime.unit_of_work() as session:
            authority = ca.load_authority(session, self.tokens,
                                          Profile.from_settings(settings),
                                          pin=settings.service_pin)
            lifecycle.revoke(session, self.clock, authority, serial, "affiliation-changed",
                             actor="operator")


@pytest.fixture
def service(own_engine: Engine, tmp_path: Path, softhsm_library: TokenLibrary,
            softhsm_module_path: str) -> Iterator[Service]:
    """A CA set up at FROZEN_AT as ``tawqi ca init`` does, on this test's tokens."""
    clock = FrozenClock(FROZEN_AT)
    settings = make_settings(tmp_path, pkcs11_module=softhsm_module_path,
                             ocsp_export_dir=str(tmp_path / "ocsp-export"))
    runtime = Runtime(settings, clock=clock, engine=own_engine, tokens=softhsm_library)
    with runtime.unit_of_work() as session:
        ca.init_ca(session, clock, softhsm_library, Profile.from_settings(settings),
                   root_token=settings.root_token_label, ca_token=settings.ca_token_label,
                   so_pin=settings.so_pin, pin=settings.service_pin,
                   root_pin=settings.root_pin, key_type=settings.ca_key_type,
                   actor="installer")
    yield Service(runtime, clock, softhsm_library)


def _identity(cin: str, name: str = "Karim") -> HolderIdentity:
    return HolderIdentity(cin=cin, given_name=name, surname="Benali",
                          title="Président du conseil communal",
                          organization="Commune de Beni Bouayach")


def _assert_fresh(service: Service) -> set[int]:
    """The CRL and every OCSP answer are valid now (signatures checked); returns the
    serials of the responder certificates that signed the answers."""
    now = as_utc(service.clock.now())
    with service.session() as session:
        issuing = x509.load_der_x509_certificate(ca.issuing_record(session).der)
        latest = crl.latest_crl(session, ca.issuing_record(session).id)
        parsed = x509.load_der_x509_crl(latest.der)
        assert parsed.is_signature_valid(issuing.public_key())
        assert parsed.next_update_utc is not None and parsed.next_update_utc > now, \
            f"CRL #{latest.number} stale at {now}"
        live = set(session.scalars(select(CertificateRecord.serial).where(
            CertificateRecord.status.in_(("issued", "suspended", "revoked")),
            CertificateRecord.not_after > now)))
        answers = {row.serial: row for row in session.scalars(select(OcspRecord))}
        assert live <= set(answers), "a certificate has no pre-signed OCSP answer"
        responders = set()
        for serial in live:
            answer = x509_ocsp.load_der_ocsp_response(answers[serial].der)
            assert answer.next_update_utc is not None and answer.next_update_utc > now, \
                f"OCSP answer for {serial} stale at {now}"
            assert answer.this_update_utc <= now
            (responder,) = answer.certificates
            assert responder.not_valid_before_utc <= now < responder.not_valid_after_utc, \
                "the OCSP responder certificate has expired"
            responders.add(responder.serial_number)
        return responders


def test_three_days_then_a_month_without_an_operator_keep_crl_and_ocsp_valid(
        service: Service) -> None:
    good = service.issue(_identity("AB123456"))
    revoked = service.issue(_identity("K12345", "Mohamed"))
    service.revoke(revoked)
    scheduler = make_scheduler(service.runtime, owner="worker-1")
    first_responders = _assert_fresh(service)
    with service.session() as session:
        first_crl = crl.latest_crl(session, ca.issuing_record(session).id)
    # Without the jobs, everything signed at the start is stale after 24 hours.
    assert first_crl.next_update == as_utc(service.clock.now()) + timedelta(hours=24)

    # Two workers (each its own Runtime, so its own sessions), their schedulers ticking
    # together every simulated hour for three days.
    second = make_scheduler(Runtime(service.runtime.settings, clock=service.clock,
                                    engine=service.runtime.engine, tokens=service.tokens),
                            owner="worker-2")
    ran: list[str] = []
    for _hour in range(72):
        service.clock.advance(timedelta(hours=1))
        tick_together([scheduler, second], ran)
        _assert_fresh(service)
    # Each job ran once per period (hourly ticks, periods of at most an hour: 72 runs).
    assert {name: ran.count(name) for name in set(ran)} == {
        "crl-republish": 72, "ocsp-resign": 72, "expiry-warnings": 72,
        "audit-anchor": 72, "handover-reminders": 3, "envelope-purge": 3,
        "campaign-notices": 3, "idempotency-purge": 72, "rate-counter-purge": 72}
    with service.session() as session:
        states = job_states(session)
        third_day_crl = crl.latest_crl(session, ca.issuing_record(session).id)
        revoked_answer = session.scalars(select(OcspRecord).where(
            OcspRecord.serial == revoked)).one()
    assert third_day_crl.number >= first_crl.number + 5  # every 12 hours at least
    assert revoked_answer.cert_status == "revoked"
    assert int(revoked, 16) in {e.serial_number
                                for e in x509.load_der_x509_crl(third_day_crl.der)}
    assert states["crl-republish"].last_outcome == OUTCOME_OK
    assert states["ocsp-resign"].failures == 0 and states["crl-republish"].failures == 0
    assert states["audit-anchor"].last_outcome == OUTCOME_OK

    for _step in range(27 * 4):  # on to day 30, the responder certificate's end
        service.clock.advance(timedelta(hours=6))
        scheduler.tick()
        _assert_fresh(service)
    final_responders = _assert_fresh(service)
    # The static export (nginx/CDN) was rewritten by the job: as fresh as the database.
    exported = Path(service.runtime.settings.ocsp_export_dir)
    index = (exported / "index.tsv").read_text(encoding="utf-8").splitlines()[1:]
    by_serial = {line.split("\t")[0]: exported / line.split("\t")[2] for line in index}
    assert revoked in by_serial and good in by_serial
    for path in by_serial.values():
        answer = x509_ocsp.load_der_ocsp_response(path.read_bytes())
        assert answer.next_update_utc is not None
        assert answer.next_update_utc > as_utc(service.clock.now())
    revoked_file = x509_ocsp.load_der_ocsp_response(by_serial[revoked].read_bytes())
    assert revoked_file.certificate_status == x509_ocsp.OCSPCertStatus.REVOKED
    assert final_responders.isdisjoint(first_responders)  # renewed, and used
    with service.session() as session:
        responder_certs = session.scalars(select(CertificateRecord).where(
            CertificateRecord.profile == PROFILE_OCSP)).all()
        good_status = session.scalars(select(CertificateRecord.status).where(
            CertificateRecord.serial == good)).one()
    assert len(responder_certs) >= 2 and good_status == STATUS_ISSUED
    renewed = max(responder_certs, key=lambda r: as_utc(r.not_after))
    assert as_utc(renewed.not_after) > service.clock.now() + timedelta(days=5)


def test_without_the_service_pin_the_signing_jobs_skip_with_a_warning(
        service: Service, caplog: pytest.LogCaptureFixture) -> None:
    runtime = Runtime(service.runtime.settings.replace(service_pin=""), clock=service.clock,
                      engine=service.runtime.engine, tokens=service.tokens)
    runs = {r.name: r for r in make_scheduler(runtime).tick()}
    assert {n for n, r in runs.items() if r.outcome == OUTCOME_SKIPPED} == \
        {"crl-republish", "ocsp-resign", "audit-anchor"}
    assert {n for n, r in runs.items() if r.outcome == OUTCOME_OK} == \
        {"expiry-warnings", "handover-reminders", "envelope-purge", "campaign-notices",
         "idempotency-purge", "rate-counter-purge"}
    assert "TAWQI_SERVICE_PIN is not set" in caplog.text


def _register(service: Service, cin: str) -> Holder:
    with service.runtime.unit_of_work() as session:
        return holders.register_holder(session, service.clock,
                                       registration(COMMUNE_A, cin=cin), actor="contact")


def _warnings(service: Service) -> list[OutboxMessage]:
    with service.session() as session:
        return list(session.scalars(select(OutboxMessage).where(
            OutboxMessage.template.like("expiry.%")).order_by(OutboxMessage.id)))


def test_expiry_warnings_once_per_certificate_and_threshold_with_two_workers(
        service: Service) -> None:
    with service.runtime.unit_of_work() as session:
        contact = contacts.designate_contact(session, service.clock, designation(PROVINCE),
                                             actor="governor")
        contact_email = contact.email
    warned_holder = _register(service, "AB123456")
    other_holder = _register(service, "JB998877")
    warned = service.issue(_identity(warned_holder.cin))
    revoked = service.issue(_identity(other_holder.cin, "Nadia"))
    service.revoke(revoked)  # a revoked certificate is not worth a warning
    service.issue(_identity("K12345", "Mohamed"))  # nobody registered with this CIN
    # Registered only 45 days before the end: first seen past the 60-day threshold.
    late = service.issue(_identity("JA554433", "Amina"))
    with service.session() as session:
        not_after = as_utc(session.scalars(select(CertificateRecord.not_after).where(
            CertificateRecord.serial == warned)).one())

    workers = [Runtime(service.runtime.settings, clock=service.clock,
                       engine=service.runtime.engine, tokens=service.tokens)
               for _ in range(2)]
    schedulers = [make_scheduler(rt, owner=f"worker-{i}") for i, rt in enumerate(workers)]

    def tick_together() -> None:
        barrier = threading.Barrier(2)
        errors: list[BaseException] = []

        def tick(index: int) -> None:
            try:
                barrier.wait()
                schedulers[index].run("expiry-warnings", force=False)
                # The domain function itself, both at once, outside the scheduler's lease:
                # the unique index still lets one of them queue the warning.
                barrier.wait()
                with workers[index].unit_of_work() as session:
                    reminders.send_expiry_warnings(session, service.clock,
                                                   thresholds=(60, 30, 7), actor="test")
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)
                barrier.abort()

        threads = [threading.Thread(target=tick, args=(i,)) for i in (0, 1)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []

    service.clock.set(not_after - timedelta(days=61))
    tick_together()
    assert _warnings(service) == []
    seen = 0
    late_holder = None
    for days in (60, 30, 7):
        if days == 30:
            late_holder = _register(service, "JA554433")
        service.clock.set(not_after - timedelta(days=days) + timedelta(hours=2))
        tick_together()
        service.clock.advance(timedelta(hours=1))  # and again later the same day
        tick_together()
        messages = _warnings(service)
        new, seen = messages[seen:], len(messages)
        expected = [("expiry.holder", "sms", warned_holder.mobile),
                    ("expiry.holder", "email", warned_holder.email),
                    ("expiry.contact", "email", contact_email)]
        if late_holder is not None:  # the tightest threshold crossed only: no 60-day one
            expected += [("expiry.holder", "sms", late_holder.mobile),
                         ("expiry.holder", "email", late_holder.email),
                         ("expiry.contact", "email", contact_email)]
        assert sorted((m.template, m.channel, m.recipient) for m in new) == sorted(expected), \
            f"at {days} days"
        for message in new:
            params = json.loads(message.params)
            text = render(message.template, message.channel, params)
            assert f"{not_after:%Y-%m-%d}" in text.body
            assert "expire le" in text.body  # each SMS in the holder's language (fr here)
            assert ("تنتهي صلاحية" in text.body) == (message.channel == "email")
            assert params["days"] == days
    with service.session() as session:
        claimed = session.scalars(select(ExpiryWarning.threshold_days).where(
            ExpiryWarning.certificate_serial == warned)).all()
        assert sorted(claimed) == [7, 30, 60]
        assert sorted(session.scalars(select(ExpiryWarning.threshold_days).where(
            ExpiryWarning.certificate_serial == late)).all()) == [7, 30]
        assert session.scalars(select(ExpiryWarning).where(
            ExpiryWarning.certificate_serial == revoked)).all() == []

    # The outbox worker sends them (console backends): French and Arabic, both recipients.
    from api.wiring import Wiring

    inbox = ConsoleInbox()
    Wiring(workers[0]).worker(inbox=inbox).drain()
    to_holder = [body for _channel, body in inbox.for_recipient(warned_holder.mobile)]
    to_contact = [body for _channel, body in inbox.for_recipient(contact_email)]
    assert len(to_holder) == 3 and len(to_contact) == 5
    assert all("Benali" in body and "بنعلي" in body for body in to_contact)


def test_metrics_show_each_jobs_last_success_and_failures(service: Service) -> None:
    make_scheduler(service.runtime).tick()
    app: Flask = create_app(rt=service.runtime)
    body = app.test_client().get("/metrics").get_data(as_text=True)
    with service.session() as session:
        states = job_states(session)
    success = states["crl-republish"].last_succeeded_at
    assert success is not None
    samples = dict(line.rsplit(" ", 1) for line in body.splitlines()
                   if line.startswith("tawqi_job_"))
    assert float(samples['tawqi_job_last_success_timestamp_seconds{job="crl-republish"}']) \
        == pytest.approx(success.timestamp())
    assert float(samples['tawqi_job_failures{job="ocsp-resign"}']) == 0
    assert float(samples['tawqi_job_next_due_timestamp_seconds{job="expiry-warnings"}']) \
        == pytest.approx((success + timedelta(hours=1)).timestamp())

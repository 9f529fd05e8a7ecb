"""Suspension, release, revocation: transitions, CRL on every change, OCSP re-signed, audit;
the scheduled refresh; the responder following the table."""

from __future__ import annotations

from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.x509 import ocsp as x509_ocsp
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.audit import AuditEvent, verify
from core.clock import FrozenClock
from pki import ca, crl, issuance, lifecycle, ocsp
from pki.authority import Authority
from pki.errors import CertificateNotFound, InvalidRevocationReason, InvalidTransition
from pki.models import OcspRecord
from tests.pki.conftest import ACTOR, HOLDERS, World, same_connection

pytestmark = pytest.mark.hsm


@pytest.fixture
def fresh(world: World, pki_session: Session, authority: Authority) -> str:
    label, pin = world.new_holder_token()
    return issuance.issue_holder_certificate(pki_session, world.clock, authority,
                                             world.library, token_label=label, token_pin=pin,
                                             holder=HOLDERS["good"], actor=ACTOR).serial


def _ocsp_status(pki_session: Session, authority: Authority, serial: str
                 ) -> x509_ocsp.OCSPResponse:
    row = pki_session.scalars(select(OcspRecord).where(OcspRecord.serial == serial)).one()
    return x509_ocsp.load_der_ocsp_response(row.der)


def test_suspend_release_revoke(world: World, pki_session: Session, authority: Authority,
                                fresh: str) -> None:
    number = crl.latest_crl(pki_session, authority.id).number
    held = lifecycle.suspend(pki_session, world.clock, authority, fresh, actor=ACTOR)
    assert held.status == "suspended"
    crl_now = x509.load_der_x509_crl(crl.latest_crl(pki_session, authority.id).der)
    entry = crl_now.get_revoked_certificate_by_serial_number(int(fresh, 16))
    assert entry is not None
    assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason == \
        x509.ReasonFlags.certificate_hold
    assert _ocsp_status(pki_session, authority, fresh).revocation_reason == \
        x509.ReasonFlags.certificate_hold
    with pytest.raises(InvalidTransition):
        lifecycle.suspend(pki_session, world.clock, authority, fresh, actor=ACTOR)

    released = lifecycle.release(pki_session, world.clock, authority, fresh, actor=ACTOR)
    assert released.status == "issued" and released.suspended_at is None
    crl_now = x509.load_der_x509_crl(crl.latest_crl(pki_session, authority.id).der)
    assert crl_now.get_revoked_certificate_by_serial_number(int(fresh, 16)) is None
    assert _ocsp_status(pki_session, authority, fresh).certificate_status == \
        x509_ocsp.OCSPCertStatus.GOOD

    revoked = lifecycle.revoke(pki_session, world.clock, authority, fresh.upper(),
                               "affiliation-changed", actor=ACTOR)
    assert revoked.status == "revoked" and revoked.revocation_reason == "affiliationChanged"
    latest = crl.latest_crl(pki_session, authority.id)
    assert latest.number == number + 3
    response = _ocsp_status(pki_session, authority, fresh)
    assert response.revocation_reason == x509.ReasonFlags.affiliation_changed
    assert response.revocation_time_utc == revoked.revoked_at
    for action in (lifecycle.release, lifecycle.suspend):
        with pytest.raises(InvalidTransition):
            action(pki_session, world.clock, authority, fresh, actor=ACTOR)
    with pytest.raises(InvalidTransition):
        lifecycle.revoke(pki_session, world.clock, authority, fresh, "keyCompromise",
                         actor=ACTOR)
    actions = [e.action for e in pki_session.scalars(
        select(AuditEvent).where(AuditEvent.object_id == fresh).order_by(AuditEvent.seq))]
    assert actions[-3:] == ["certificate.suspended", "certificate.released",
                            "certificate.revoked"]
    assert verify(pki_session).ok


@pytest.mark.parametrize("reason,expected", [
    ("keyCompromise", "keyCompromise"), ("cessation_of_operation", "cessationOfOperation"),
    ("Superseded", "superseded"), ("privilege-withdrawn", "privilegeWithdrawn"),
    ("unspecified", "unspecified")])
def test_reason_codes(world: World, pki_session: Session, authority: Authority, fresh: str,
                      reason: str, expected: str) -> None:
    status = lifecycle.revoke(pki_session, world.clock, authority, fresh, reason, actor=ACTOR)
    assert status.revocation_reason == expected
    entry = x509.load_der_x509_crl(crl.latest_crl(pki_session, authority.id).der) \
        .get_revoked_certificate_by_serial_number(int(fresh, 16))
    assert entry is not None
    reasons = [e for e in entry.extensions if isinstance(e.value, x509.CRLReason)]
    # RFC 5280 §5.3.1: reasonCode unspecified SHOULD be absent.
    assert (reasons[0].value.reason.value if reasons else "unspecified") == expected


@pytest.mark.parametrize("reason", ["certificateHold", "removeFromCRL", "", "whatever"])
def test_bad_reasons_refused(world: World, pki_session: Session, authority: Authority,
                             fresh: str, reason: str) -> None:
    with pytest.raises(InvalidRevocationReason):
        lifecycle.revoke(pki_session, world.clock, authority, fresh, reason, actor=ACTOR)
    assert lifecycle.certificate_status(pki_session, fresh).status == "issued"


def test_unknown_serial(pki_session: Session, authority: Authority, world: World) -> None:
    with pytest.raises(CertificateNotFound):
        lifecycle.certificate_status(pki_session, "abc123")
    with pytest.raises(CertificateNotFound):
        lifecycle.revoke(pki_session, world.clock, authority, "zz-not-hex", "superseded",
                         actor=ACTOR)


def test_list_certificates(world: World, pki_session: Session) -> None:
    revoked = lifecycle.list_certificates(pki_session, status="revoked", profile="holder")
    assert world.serials["revoked"] in {c.serial for c in revoked}
    by_cin = lifecycle.list_certificates(pki_session, cin="k12345")
    assert [c.serial for c in by_cin] == [world.serials["revoked"]]


def test_scheduled_refresh(world: World, pki_session: Session, authority: Authority) -> None:
    report = ca.refresh(pki_session, world.clock, authority, world.library, pin=world.pin,
                        actor=ACTOR)
    assert report.crl_number is None and report.ocsp_signed == 0  # nothing due yet
    later = FrozenClock(world.clock.now() + timedelta(hours=13))
    report = ca.refresh(pki_session, later, authority, world.library, pin=world.pin,
                        actor=ACTOR)
    assert report.crl_number is not None and report.ocsp_signed >= 5
    assert report.responder_renewed is None
    # Twenty-one days on, the 30-day responder certificate is renewed (same key).
    much_later = FrozenClock(world.clock.now() + timedelta(days=21))
    report = ca.refresh(pki_session, much_later, authority, world.library, pin=world.pin,
                        actor=ACTOR)
    assert report.responder_renewed is not None
    new = report.authority.ocsp_signer
    old = authority.ocsp_signer
    assert new is not None and old is not None
    assert new.certificate.serial_number != old.certificate.serial_number
    assert new.certificate.public_key() == old.certificate.public_key()


def test_responder_follows_the_table(world: World, pki_session: Session,
                                     authority: Authority, fresh: str) -> None:
    responder = ocsp.OcspResponder(same_connection(pki_session), world.clock,
                                   sync_seconds=3600)
    request = ocsp.canonical_request(authority.name_hash, authority.key_hash, int(fresh, 16))
    first = x509_ocsp.load_der_ocsp_response(responder.respond(request).der)
    assert first.certificate_status == x509_ocsp.OCSPCertStatus.GOOD
    world.clock.advance(timedelta(seconds=5))
    try:
        lifecycle.revoke(pki_session, world.clock, authority, fresh, "keyCompromise",
                         actor=ACTOR)
        cached = x509_ocsp.load_der_ocsp_response(responder.respond(request).der)
        assert cached.certificate_status == x509_ocsp.OCSPCertStatus.GOOD  # not synced yet
        responder.invalidate()
        now = x509_ocsp.load_der_ocsp_response(responder.respond(request).der)
        assert now.certificate_status == x509_ocsp.OCSPCertStatus.REVOKED
    finally:
        world.clock.advance(timedelta(seconds=-5))

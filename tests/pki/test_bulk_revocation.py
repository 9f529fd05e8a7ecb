"""Bulk revocation (after an election): one operation, each OCSP answer re-signed, ONE CRL
at the end, a dry run, all-or-nothing input checks, and resuming an interrupted run."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.x509 import ocsp as x509_ocsp
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.audit import AuditEvent, verify
from pki import crl, issuance, lifecycle
from pki.authority import Authority
from pki.errors import BulkRevocationRefused, InvalidRevocationReason
from pki.models import CrlRecord, OcspRecord
from pki.profiles import HolderIdentity
from tests.pki.conftest import ACTOR, World

pytestmark = pytest.mark.hsm


def _issue(world: World, session: Session, authority: Authority, count: int) -> list[str]:
    label, pin = world.new_holder_token()
    serials = []
    for n in range(count):
        holder = HolderIdentity(cin=f"BK{100000 + n}", given_name="Amina", surname=f"Test{n}",
                                title="Présidente du conseil communal",
                                organization="Commune de Tiznit")
        serials.append(issuance.issue_holder_certificate(
            session, world.clock, authority, world.library, token_label=label, token_pin=pin,
            holder=holder, actor=ACTOR).serial)
    return serials


def _crl_count(session: Session, authority: Authority) -> int:
    return session.scalar(select(func.count()).select_from(CrlRecord)
                          .where(CrlRecord.authority_id == authority.id)) or 0


def _ocsp(session: Session, serial: str) -> x509_ocsp.OCSPResponse:
    row = session.scalars(select(OcspRecord).where(OcspRecord.serial == serial)).one()
    return x509_ocsp.load_der_ocsp_response(row.der)


def test_bulk_revokes_with_one_crl(world: World, pki_session: Session,
                                   authority: Authority) -> None:
    serials = _issue(world, pki_session, authority, 4)
    lifecycle.suspend(pki_session, world.clock, authority, serials[3], actor=ACTOR)
    crls_before = _crl_count(pki_session, authority)
    seen: list[tuple[int, int]] = []
    # duplicates and another spelling of a serial count once
    result = lifecycle.revoke_many(pki_session, world.clock, authority,
                                   [*serials, serials[0].upper(), "", "0x" + serials[1]],
                                   "affiliation-changed", actor=ACTOR,
                                   progress=lambda d, t: seen.append((d, t)))
    assert result.revoked == serials and result.skipped == [] and not result.dry_run
    assert result.reason == "affiliationChanged"
    assert _crl_count(pki_session, authority) == crls_before + 1
    latest = crl.latest_crl(pki_session, authority.id)
    assert result.crl_number == latest.number
    published = x509.load_der_x509_crl(latest.der)
    for serial in serials:
        entry = published.get_revoked_certificate_by_serial_number(int(serial, 16))
        assert entry is not None
        assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason == \
            x509.ReasonFlags.affiliation_changed
        response = _ocsp(pki_session, serial)
        assert response.certificate_status == x509_ocsp.OCSPCertStatus.REVOKED
        assert response.revocation_reason == x509.ReasonFlags.affiliation_changed
    assert seen[0] == (0, 4) and seen[-1] == (4, 4)
    revoked_events = pki_session.scalars(select(AuditEvent).where(
        AuditEvent.action == "certificate.revoked", AuditEvent.object_id.in_(serials))).all()
    assert len(revoked_events) == 4
    assert verify(pki_session).ok

    again = lifecycle.revoke_many(pki_session, world.clock, authority, serials,
                                  "affiliationChanged", actor=ACTOR)
    assert again.revoked == [] and again.skipped == serials
    other = lifecycle.revoke_many(pki_session, world.clock, authority, serials[:1],
                                  "keyCompromise", actor=ACTOR, dry_run=True)
    assert other.other_reason == [(serials[0], "affiliationChanged")] and other.revoked == []


def test_dry_run_changes_nothing(world: World, pki_session: Session,
                                 authority: Authority) -> None:
    serials = _issue(world, pki_session, authority, 2)
    crls_before = _crl_count(pki_session, authority)
    events_before = pki_session.scalar(select(func.count()).select_from(AuditEvent))
    plan = lifecycle.revoke_many(pki_session, world.clock, authority,
                                 [*serials, world.serials["revoked"]], "affiliationChanged",
                                 actor=ACTOR, dry_run=True)
    assert plan.dry_run and plan.revoked == serials
    assert plan.skipped == [world.serials["revoked"]] and plan.crl_number is None
    assert plan.as_dict()["total"] == 3
    assert _crl_count(pki_session, authority) == crls_before
    assert pki_session.scalar(select(func.count()).select_from(AuditEvent)) == events_before
    for serial in serials:
        assert lifecycle.certificate_status(pki_session, serial).status == "issued"


def test_bad_input_refuses_everything(world: World, pki_session: Session,
                                      authority: Authority) -> None:
    serials = _issue(world, pki_session, authority, 1)
    with pytest.raises(BulkRevocationRefused) as caught:
        lifecycle.revoke_many(pki_session, world.clock, authority,
                              [serials[0], "abcdef0123", "not-hex!"], "superseded",
                              actor=ACTOR)
    problems = caught.value.extras["problems"]
    assert {p["serial"] for p in problems} == {"abcdef0123", "not-hex!"}
    assert lifecycle.certificate_status(pki_session, serials[0]).status == "issued"
    with pytest.raises(InvalidRevocationReason):
        lifecycle.revoke_many(pki_session, world.clock, authority, serials,
                              "certificateHold", actor=ACTOR)


class Killed(Exception):
    """Stands for the process dying mid-way."""


def test_interrupted_then_resumed(world: World, pki_session: Session,
                                  authority: Authority) -> None:
    serials = _issue(world, pki_session, authority, 5)
    pki_session.commit()
    crls_before = _crl_count(pki_session, authority)

    def die_at_three(done: int, total: int) -> None:
        if done == 3:
            raise Killed()

    with pytest.raises(Killed):
        lifecycle.revoke_many(pki_session, world.clock, authority, serials,
                              "affiliationChanged", actor=ACTOR, progress=die_at_three,
                              checkpoint=pki_session.commit, checkpoint_every=2)
    pki_session.rollback()  # the third revocation was not committed
    states = [lifecycle.certificate_status(pki_session, s).status for s in serials]
    assert states == ["revoked", "revoked", "issued", "issued", "issued"]
    assert _crl_count(pki_session, authority) == crls_before  # the CRL comes at the end

    resumed = lifecycle.revoke_many(pki_session, world.clock, authority, serials,
                                    "affiliationChanged", actor=ACTOR,
                                    checkpoint=pki_session.commit, checkpoint_every=2)
    assert resumed.skipped == serials[:2] and resumed.revoked == serials[2:]
    assert _crl_count(pki_session, authority) == crls_before + 1
    published = x509.load_der_x509_crl(crl.latest_crl(pki_session, authority.id).der)
    assert all(published.get_revoked_certificate_by_serial_number(int(s, 16)) is not None
               for s in serials)
    events = pki_session.scalars(select(AuditEvent).where(
        AuditEvent.action == "certificate.revoked", AuditEvent.object_id.in_(serials))).all()
    assert len(events) == 5  # each certificate revoked exactly once
    assert verify(pki_session).ok

"""Issuance: the holder profile's content, keys on the holder's token, prepare-persist-sign
once, renewal and re-key, audit."""

from __future__ import annotations

from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtensionOID, NameOID
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.audit import AuditEvent
from hsm import PinIncorrect
from pki import issuance, lifecycle
from pki.authority import Authority
from pki.errors import AuthorityExpired, InvalidTransition
from pki.models import CertificateRecord
from pki.profiles import ETSI_NCP_PLUS, HolderIdentity
from tests.pki.conftest import ACTOR, HOLDERS, World

pytestmark = pytest.mark.hsm


def _cert(pki_session: Session, serial: str) -> x509.Certificate:
    return x509.load_der_x509_certificate(lifecycle.certificate_der(pki_session, serial))


def test_holder_profile_content(world: World, pki_session: Session) -> None:
    cert = _cert(pki_session, world.serials["good"])
    subject = cert.subject
    holder = HOLDERS["good"]

    def one(oid: x509.ObjectIdentifier) -> x509.NameAttribute:
        found = subject.get_attributes_for_oid(oid)
        assert len(found) == 1, oid
        return found[0]

    assert one(NameOID.COMMON_NAME).value == "Fatima Zahra El Idrissi"
    assert one(NameOID.GIVEN_NAME).value == holder.given_name
    assert one(NameOID.SURNAME).value == holder.surname
    assert one(NameOID.SERIAL_NUMBER).value == "IDCMA-AB123456"
    assert one(NameOID.TITLE).value == holder.title
    assert one(NameOID.ORGANIZATION_NAME).value == "Commune de Tiznit"
    assert one(NameOID.ORGANIZATION_NAME)._type == x509.name._ASN1Type.UTF8String
    assert one(NameOID.COUNTRY_NAME).value == "MA"
    key_usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert key_usage.critical and key_usage.value.content_commitment
    assert not key_usage.value.digital_signature and not key_usage.value.key_cert_sign
    policies = {p.policy_identifier.dotted_string for p in
                cert.extensions.get_extension_for_class(x509.CertificatePolicies).value}
    assert policies == {world.profile.policy_oid + ".1", ETSI_NCP_PLUS}
    aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    urls = {d.access_method.dotted_string: d.access_location.value for d in aia}
    assert urls["1.3.6.1.5.5.7.48.1"] == "http://pki.tawqi.ma/ocsp"
    assert urls["1.3.6.1.5.5.7.48.2"] == f"http://pki.tawqi.ma/ca/{world.init.issuing_id}.crt"
    cdp = cert.extensions.get_extension_for_oid(ExtensionOID.CRL_DISTRIBUTION_POINTS).value
    assert cdp[0].full_name[0].value == f"http://pki.tawqi.ma/crl/{world.init.issuing_id}.crl"
    ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert ski == x509.SubjectKeyIdentifier.from_public_key(cert.public_key())
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    issuer_ski = world.issuing.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    assert aki.key_identifier == issuer_ski.value.digest
    assert cert.serial_number.bit_length() >= 64
    assert len(cert.serial_number.to_bytes(21, "big").lstrip(b"\0")) <= 20
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == timedelta(days=1095)


def test_arabic_organisation_is_utf8(world: World, pki_session: Session) -> None:
    cert = _cert(pki_session, world.serials["revoked"])
    org = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0]
    assert org.value == "جماعة أكادير"


def test_key_on_holder_token_and_certificate_written_back(world: World,
                                                          pki_session: Session) -> None:
    row = issuance.get_record(pki_session, world.serials["good"])
    label = world.holder_tokens["good"]
    assert row.token_label == label
    on_token = world.library.read_certificate(label, key_id=bytes.fromhex(row.key_id))
    assert on_token == row.der
    key = world.library.private_key(label, world.holder_pins["good"],
                                    key_id=bytes.fromhex(row.key_id))
    cert = x509.load_der_x509_certificate(on_token)
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    assert key.public_key().public_bytes(serialization.Encoding.DER, spki) == \
        cert.public_key().public_bytes(serialization.Encoding.DER, spki)
    with pytest.raises(Exception, match=r"(?i)token|extract|refus"):
        key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                          serialization.NoEncryption())


def test_issue_audits_and_presigns(world: World, pki_session: Session,
                                   authority: Authority) -> None:
    label, pin = world.new_holder_token()
    before = pki_session.scalar(select(func.count()).select_from(AuditEvent))
    holder = HolderIdentity(cin="ab1", given_name="Ali", surname="Amrani", title="Président",
                            organization="Commune de Tafraout")
    issued = issuance.issue_holder_certificate(pki_session, world.clock, authority,
                                               world.library, token_label=label,
                                               token_pin=pin, holder=holder, actor=ACTOR)
    assert issued.written_to_token and issued.status == "issued"
    actions = [e.action for e in pki_session.scalars(
        select(AuditEvent).where(AuditEvent.seq > (before or 0)).order_by(AuditEvent.seq))]
    assert actions == ["certificate.prepared", "certificate.issued",
                       "certificate.written_to_token"]
    summaries = " ".join(e.summary for e in pki_session.scalars(select(AuditEvent)))
    assert pin not in summaries
    status = lifecycle.certificate_status(pki_session, issued.serial)
    assert status.cin == "AB1" and status.valid_at(world.clock.now())


def test_wrong_pin_writes_nothing(world: World, pki_session: Session,
                                  authority: Authority) -> None:
    label, _pin = world.new_holder_token()
    count = pki_session.scalar(select(func.count()).select_from(CertificateRecord))
    with pytest.raises(PinIncorrect):
        issuance.issue_holder_certificate(pki_session, world.clock, authority, world.library,
                                          token_label=label, token_pin="000000x",
                                          holder=HOLDERS["good"], actor=ACTOR)
    assert pki_session.scalar(select(func.count()).select_from(CertificateRecord)) == count


def test_prepared_issuance_is_signed_once(world: World, pki_session: Session,
                                          authority: Authority) -> None:
    label, pin = world.new_holder_token()
    public = world.library.generate_key_pair(label, pin, key_type="EC-P256",
                                             key_label="k", key_id=b"\x07")
    spki = public.public_bytes(serialization.Encoding.DER,
                               serialization.PublicFormat.SubjectPublicKeyInfo)
    request = issuance.IssuanceRequest("holder", spki, label, b"\x07", "EC-P256",
                                       holder=HOLDERS["good"])
    prepared = issuance.prepare(pki_session, world.clock, authority, request, actor=ACTOR)
    row = pki_session.get(CertificateRecord, prepared.id)
    assert row is not None and row.status == "prepared" and row.der is None
    issued = issuance.sign_prepared(pki_session, world.clock, authority, prepared, actor=ACTOR)
    assert issued.serial == prepared.serial
    with pytest.raises(InvalidTransition):
        issuance.sign_prepared(pki_session, world.clock, authority, prepared.id, actor=ACTOR)
    with pytest.raises(InvalidTransition):
        issuance.abandon(pki_session, world.clock, prepared.id, actor=ACTOR)


def test_abandoned_issuance_is_never_signed(world: World, pki_session: Session,
                                            authority: Authority) -> None:
    label, pin = world.new_holder_token()
    prepared = issuance.prepare_holder(pki_session, world.clock, authority, world.library,
                                       token_label=label, token_pin=pin,
                                       holder=HOLDERS["good"], actor=ACTOR)
    issuance.abandon(pki_session, world.clock, prepared.id, actor=ACTOR, reason="courier lost")
    with pytest.raises(InvalidTransition):
        issuance.complete_holder(pki_session, world.clock, authority, world.library,
                                 prepared, token_pin=pin, actor=ACTOR)
    assert lifecycle.certificate_status(pki_session, prepared.serial).status == "abandoned"


def test_issuance_request_validates(world: World) -> None:
    with pytest.raises(Exception, match="holder"):
        issuance.IssuanceRequest("holder", b"", "t", b"\x01", "EC-P256")
    with pytest.raises(Exception, match="key type"):
        issuance.IssuanceRequest("ocsp", b"", "t", b"\x01", "DSA-1024", common_name="x")


def test_renew_and_rekey(world: World, pki_session: Session, authority: Authority) -> None:
    label, pin = world.new_holder_token()
    first = issuance.issue_holder_certificate(pki_session, world.clock, authority,
                                              world.library, token_label=label, token_pin=pin,
                                              holder=HOLDERS["good"], actor=ACTOR)
    renewed = issuance.renew(pki_session, world.clock, authority, world.library, first.serial,
                             actor=ACTOR, token_pin=pin)
    assert renewed.serial != first.serial
    assert renewed.certificate.public_key() == first.certificate.public_key()
    assert lifecycle.certificate_status(pki_session, first.serial).status == "issued"
    rekeyed = issuance.renew(pki_session, world.clock, authority, world.library,
                             renewed.serial, actor=ACTOR, token_pin=pin, rekey=True)
    assert rekeyed.certificate.public_key() != renewed.certificate.public_key()
    old = lifecycle.certificate_status(pki_session, renewed.serial)
    assert old.status == "revoked" and old.revocation_reason == "superseded"
    assert lifecycle.certificate_status(pki_session, rekeyed.serial).replaces_id == old.id


def test_expired_ca_refuses(world: World, pki_session: Session, authority: Authority) -> None:
    from core.clock import FrozenClock

    late = FrozenClock(world.issuing.not_valid_after_utc + timedelta(days=1))
    label, pin = world.new_holder_token()
    with pytest.raises(AuthorityExpired):
        issuance.issue_holder_certificate(pki_session, late, authority, world.library,
                                          token_label=label, token_pin=pin,
                                          holder=HOLDERS["good"], actor=ACTOR)

"""Verification reports (pki.signing.verification): our own signatures at every level, after
revocation, PDFs signed elsewhere (pyHanko with a throwaway CA made here), tampering."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import pytest
from asn1crypto import keys as asn1_keys
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.sign import fields, signers
from pyhanko_certvalidator.registry import SimpleCertificateStore

from core.clock import FrozenClock
from pki.signer import to_asn1
from pki.signing.errors import DocumentTooLarge, InvalidDocument
from pki.signing.pades import Level, PadesRequest, PadesService
from pki.signing.verification import Verifier
from tests.pki.test_pades_pki import FROZEN_AT, build_pki, permit_pdf, stamp_for

LATER = FROZEN_AT + timedelta(minutes=10)


@pytest.fixture(scope="module")
def pki():  # type: ignore[no-untyped-def]
    return build_pki()


@pytest.fixture(scope="module")
def signed(pki) -> dict[str, bytes]:  # type: ignore[no-untyped-def]
    service = PadesService(FrozenClock(FROZEN_AT), trust_roots=[pki.root],
                           timestamper=pki.timestamper(), revocation=pki.revocation_source())
    docs = {level.value: service.sign(permit_pdf(), pki.signer(),
                                      PadesRequest(level=level, stamp=stamp_for())).data
            for level in Level}
    docs["twice"] = service.sign(docs["B-LT"], pki.signer("second"),
                                 PadesRequest(level=Level.B_LT)).data
    # Signed by a revoked holder (the CA revoked it the day before; B-B skips the check).
    docs["revoked"] = service.sign(permit_pdf(), pki.signer("revoked"),
                                   PadesRequest(level=Level.B_T)).data
    return docs


def verifier(pki, *, at: datetime = LATER, **extra) -> Verifier:  # type: ignore[no-untyped-def]
    return Verifier(FrozenClock(at), trust_roots=[pki.root],
                    revocation=pki.revocation_source(at, **extra))


@pytest.mark.parametrize("level", ["B-B", "B-T", "B-LT"])
def test_our_signatures_pass(pki, signed, level: str) -> None:  # type: ignore[no-untyped-def]
    report = verifier(pki).verify(signed[level])
    assert report.indication == "TOTAL-PASSED"
    (sig,) = report.signatures
    assert sig.indication == "TOTAL-PASSED" and sig.sub_indication is None
    assert sig.level == f"PAdES-{level}"
    assert sig.signer.name == "Mohamed El Alaoui"
    assert sig.signer.cin == "AB123456"
    assert sig.signer.serial_number == "IDCMA-AB123456"
    assert sig.signer.title == "Président"
    assert sig.signer.organisation == "Commune d'Al Hoceima"
    assert sig.claimed_signing_time == FROZEN_AT
    assert sig.integrity
    assert sig.certificate_at_signing.status == "good"
    assert sig.certificate_now.status == "good"
    if level == "B-B":
        assert sig.timestamp_time is None and sig.coverage.scope == "whole-document"
    else:
        assert sig.timestamp_time == FROZEN_AT + timedelta(seconds=1)
        assert sig.timestamp_authority and "Tawqi Test TSA" in sig.timestamp_authority
    if level == "B-LT":
        assert sig.coverage.scope == "revision"
        assert sig.coverage.changes_after == "validation-data"
        assert sig.coverage.changes_allowed
    data = report.to_dict()
    assert data["signatures"][0]["indication_uri"] == \
        "urn:etsi:019102:mainindication:total-passed"


def test_b_lt_verifies_from_the_file_alone(pki, signed) -> None:  # type: ignore[no-untyped-def]
    offline = Verifier(FrozenClock(LATER), trust_roots=[pki.root])
    assert offline.verify(signed["B-LT"]).indication == "TOTAL-PASSED"
    report = offline.verify(signed["B-B"])
    assert report.indication == "INDETERMINATE"
    assert report.signatures[0].certificate_now.status == "unknown"


def test_two_signatures_both_pass(pki, signed) -> None:  # type: ignore[no-untyped-def]
    report = verifier(pki).verify(signed["twice"])
    first, second = report.signatures
    assert first.indication == second.indication == "TOTAL-PASSED"
    assert first.coverage.changes_after == "signatures-and-form-filling"
    assert second.signer.cin == "K12345"


def test_revoked_after_signing_b_lt_still_passes(pki, signed) -> None:  # type: ignore[no-untyped-def]
    """Revoked a week after signing: the time-stamp proves the signature came first."""
    holder = pki.signer().certificate
    week = FROZEN_AT + timedelta(days=7)
    revoked = {holder.serial_number: (x509.ReasonFlags.affiliation_changed, week)}
    later = verifier(pki, at=week + timedelta(hours=1), extra=revoked)
    (sig,) = later.verify(signed["B-LT"]).signatures
    assert sig.certificate_at_signing.status == "good"
    assert sig.certificate_now.status == "revoked"
    assert sig.certificate_now.reason == "affiliation_changed"
    assert sig.certificate_now.revoked_at == week
    assert sig.indication == "TOTAL-PASSED"
    # B-T too: today's OCSP response dates the revocation after the time-stamp.
    (sig,) = later.verify(signed["B-T"]).signatures
    assert sig.indication == "TOTAL-PASSED"
    assert sig.certificate_at_signing.status == "good"
    assert sig.certificate_now.status == "revoked"


def test_revoked_after_signing_b_b_is_indeterminate(pki, signed) -> None:  # type: ignore[no-untyped-def]
    """Without a time-stamp nothing proves the signature predates the revocation."""
    holder = pki.signer().certificate
    week = FROZEN_AT + timedelta(days=7)
    revoked = {holder.serial_number: (x509.ReasonFlags.key_compromise, week)}
    report = verifier(pki, at=week + timedelta(hours=1), extra=revoked).verify(signed["B-B"])
    (sig,) = report.signatures
    assert sig.indication == "INDETERMINATE"
    assert sig.sub_indication == "REVOKED_NO_POE"
    assert sig.certificate_now.status == "revoked"


def test_signed_with_a_revoked_certificate_fails(pki, signed) -> None:  # type: ignore[no-untyped-def]
    (sig,) = verifier(pki).verify(signed["revoked"]).signatures
    assert sig.indication != "TOTAL-PASSED"
    assert sig.certificate_at_signing.status == "revoked"
    assert sig.certificate_now.status == "revoked"


def test_suspension_is_reported(pki) -> None:  # type: ignore[no-untyped-def]
    service = PadesService(FrozenClock(FROZEN_AT))
    data = service.sign(permit_pdf(), pki.signer("suspended"),
                        PadesRequest(level=Level.B_B)).data
    (sig,) = verifier(pki).verify(data).signatures
    assert sig.certificate_now.status == "suspended"
    assert sig.indication != "TOTAL-PASSED"


def test_unsigned_pdf_gives_an_empty_report(pki) -> None:  # type: ignore[no-untyped-def]
    report = verifier(pki).verify(permit_pdf())
    assert report.signatures == () and report.indication is None
    assert report.to_dict()["signature_count"] == 0


@pytest.mark.parametrize("data", [b"", b"not a pdf", b"%PDF-1.7\n\x00\xff garbage"])
def test_broken_files_are_4xx(pki, data: bytes) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidDocument) as caught:
        verifier(pki).verify(data)
    assert caught.value.status in (400, 422)


def test_oversized_file_is_413(pki, signed) -> None:  # type: ignore[no-untyped-def]
    small = Verifier(FrozenClock(LATER), trust_roots=[pki.root], max_bytes=1024)
    with pytest.raises(DocumentTooLarge) as caught:
        small.verify(signed["B-B"])
    assert caught.value.status == 413


# --------------------------------------------------------------------------- elsewhere


def _foreign_pdf() -> tuple[bytes, x509.Certificate]:
    """A PDF signed by someone else: pyHanko's SimpleSigner, an RSA CA made up here."""
    now = datetime.now(UTC)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "FR"),
                          x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Ailleurs SA"),
                          x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca = (x509.CertificateBuilder().subject_name(name("Ailleurs Root"))
          .issuer_name(name("Ailleurs Root")).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number())
          .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=30))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([*name("Jeanne Martin"),
                         x509.NameAttribute(NameOID.SERIAL_NUMBER, "PASFR-12AB34567")])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=30))
            .sign(ca_key, hashes.SHA256()))
    pkcs8 = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption())
    signer = signers.SimpleSigner(
        signing_cert=to_asn1(cert), signing_key=asn1_keys.PrivateKeyInfo.load(pkcs8),
        cert_registry=SimpleCertificateStore.from_certs([to_asn1(ca)]))
    meta = signers.PdfSignatureMetadata(field_name="Elsewhere",
                                        subfilter=fields.SigSeedSubFilter.PADES)
    out = signers.sign_pdf(IncrementalPdfFileWriter(io.BytesIO(permit_pdf("Facture"))), meta,
                           signer=signer)
    return out.getvalue(), ca


@pytest.fixture(scope="module")
def foreign() -> tuple[bytes, x509.Certificate]:
    return _foreign_pdf()


def test_foreign_signature_is_untrusted_not_failed(pki, foreign) -> None:  # type: ignore[no-untyped-def]
    data, _ca = foreign
    report = Verifier(FrozenClock(datetime.now(UTC)), trust_roots=[pki.root]).verify(data)
    (sig,) = report.signatures
    assert sig.indication == "INDETERMINATE"
    assert sig.sub_indication == "NO_CERTIFICATE_CHAIN_FOUND"
    assert sig.integrity
    assert sig.signer.name == "Jeanne Martin" and sig.signer.cin is None
    assert sig.signer.serial_number == "PASFR-12AB34567"
    assert sig.certificate_now.status == "untrusted"


def test_foreign_signature_with_its_root_trusted(foreign) -> None:  # type: ignore[no-untyped-def]
    """Trusting the foreign root, it only lacks revocation data (it publishes none)."""
    data, ca = foreign
    (sig,) = Verifier(FrozenClock(datetime.now(UTC)), trust_roots=[ca]).verify(data).signatures
    assert sig.indication == "INDETERMINATE"
    assert sig.sub_indication != "NO_CERTIFICATE_CHAIN_FOUND"
    assert sig.certificate_now.status == "unknown"


def test_foreign_signature_tampered_bytes_fail(pki, foreign) -> None:  # type: ignore[no-untyped-def]
    data, _ca = foreign
    index = data.index(b"Facture")
    tampered = data[:index] + b"Fucture" + data[index + len(b"Facture"):]
    (sig,) = Verifier(FrozenClock(datetime.now(UTC)),
                      trust_roots=[pki.root]).verify(tampered).signatures
    assert sig.indication == "TOTAL-FAILED"
    assert sig.sub_indication == "HASH_FAILURE"
    assert not sig.integrity


def test_content_changed_after_signing_fails(pki, signed) -> None:  # type: ignore[no-untyped-def]
    """An incremental update that rewrites the page: the signed bytes are intact but the
    document shown is no longer the one signed."""
    writer = IncrementalPdfFileWriter(io.BytesIO(signed["B-T"]))
    page_ref, _resources = writer.find_page_for_modification(0)
    new_content = writer.add_object(generic.StreamObject(
        stream_data=b"BT /F1 16 Tf 72 700 Td (Permis ANNULE) Tj ET"))
    page = page_ref.get_object()
    page[generic.NameObject("/Contents")] = new_content
    writer.update_container(page)
    out = io.BytesIO()
    writer.write(out)
    (sig,) = verifier(pki).verify(out.getvalue()).signatures
    assert sig.integrity  # the signed revision itself is untouched
    assert sig.coverage.changes_after == "other" and not sig.coverage.changes_allowed
    assert sig.indication == "TOTAL-FAILED" and sig.sub_indication == "HASH_FAILURE"


@pytest.mark.parametrize("level", ["B-B", "B-LT"])
def test_fetching_on_leaves_our_signatures_passed(pki, signed, level: str) -> None:  # type: ignore[no-untyped-def]
    """With fetching allowed, our own addresses unreachable from the test: what we hold
    still decides, and a fetch that fails does not spoil it."""
    from pki.signing.revinfo import FetchPolicy

    fetching = Verifier(FrozenClock(LATER), trust_roots=[pki.root],
                        revocation=pki.revocation_source(LATER), allow_fetching=True,
                        fetch_policy=FetchPolicy(timeout_seconds=2))
    (sig,) = fetching.verify(signed[level]).signatures
    assert sig.indication == "TOTAL-PASSED", sig.reasons
    assert sig.certificate_now.status == "good"

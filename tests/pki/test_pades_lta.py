"""PAdES for decades (pki.signing.pades B-LTA and ``extend``), judged with a moved clock by
our verifier (the ETSI long-term process, offline) and by pdfsig and pyHanko's validator.

The clock moves years ahead: the holder's certificate (three years) and a short-lived TSA
certificate (one year) expire, and only the archive time-stamps keep the signature
provable. Revocation data is what our CA would publish at each moment (signed on the spot).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from unittest import mock

import pytest
from asn1crypto import keys as asn1_keys
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.timestamps.dummy_client import DummyTimeStamper
from pyhanko.sign.validation import validate_pdf_signature, validate_pdf_timestamp
from pyhanko_certvalidator import ValidationContext
from pyhanko_certvalidator.ltv import ades_past
from pyhanko_certvalidator.registry import SimpleCertificateStore

from core.clock import FrozenClock
from pki.signer import to_asn1
from pki.signing.errors import InvalidDocument
from pki.signing.pades import Level, PadesRequest, PadesService, RevocationData
from pki.signing.verification import Verifier
from tests.pki.test_pades_pki import (
    FROZEN_AT,
    ThrowawayPki,
    _cert,
    _endpoints,
    _ku,
    _name,
    build_pki,
    make_nss_db,
    pdfsig,
    permit_pdf,
    stamp_for,
)

YEAR = timedelta(days=365)


class LiveRevocation:
    """What our CA publishes at ``at``: a fresh OCSP response for each certificate it
    issued that is still valid (from a renewed responder certificate once the first one
    has expired), the root's CRL and, with ``ca_crl``, the issuing CA's CRL."""

    def __init__(self, pki: ThrowawayPki, at: datetime, *, ca_crl: bool = True) -> None:
        self.at, self.ca_crl = at, ca_crl
        if pki.ocsp_cert.not_valid_after_utc <= at:
            renewed = _cert(pki.ocsp_cert.subject, pki.ocsp_key, pki.ca, pki.ca_key,
                            ca=False, days=365, extensions=[
                                (_ku(digital_signature=True), True),
                                (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.OCSP_SIGNING]),
                                 False), (x509.OCSPNoCheck(), False)],
                            not_before=at - timedelta(days=1), serial=0x1003 + at.year)
            pki = replace(pki, ocsp_cert=renewed)
        self.pki = pki

    def revocation_data(self, certificates):  # type: ignore[no-untyped-def]
        ocsps = tuple(self.pki.ocsp_response(c, self.at) for c in certificates
                      if c.issuer == self.pki.ca.subject and c.subject != c.issuer
                      and c.not_valid_after_utc > self.at)
        crls = (self.pki.crl("root", self.at),)
        if self.ca_crl:
            crls += (self.pki.crl("ca", self.at),)
        return RevocationData(ocsps, crls)


def _tsa(pki: ThrowawayPki, *, days: int, serial: int
         ) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = _cert(_name(f"Tawqi Test TSA {serial:x}"), key, pki.ca, pki.ca_key, ca=False,
                 days=days, extensions=[
                     (_ku(digital_signature=True), True),
                     (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), True),
                     *_endpoints()],
                 not_before=FROZEN_AT - timedelta(days=1), serial=serial)
    return cert, key


def _stamper(pki: ThrowawayPki, cert: x509.Certificate, key: rsa.RSAPrivateKey,
             at: datetime) -> DummyTimeStamper:
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    return DummyTimeStamper(tsa_cert=to_asn1(cert), tsa_key=asn1_keys.PrivateKeyInfo.load(der),
                            certs_to_embed=SimpleCertificateStore.from_certs(
                                [to_asn1(pki.ca), to_asn1(pki.root)]),
                            fixed_dt=at + timedelta(seconds=1))


def _service(pki: ThrowawayPki, at: datetime, stamper: DummyTimeStamper) -> PadesService:
    return PadesService(FrozenClock(at), trust_roots=[pki.root], timestamper=stamper,
                        revocation=LiveRevocation(pki, at))


@contextmanager
def _pyhanko_clock(at: datetime) -> Iterator[None]:
    """pyHanko's past validation of a certificate path starts from the system's time when
    it is not given a control time (``pyhanko_certvalidator.ltv.ades_past``), whatever the
    validation time we pass: move that clock too."""

    class _Moved(datetime):
        @classmethod
        def now(cls, tz=None):  # type: ignore[no-untyped-def, override]
            return at.astimezone(tz) if tz is not None else at.replace(tzinfo=None)

    with mock.patch.object(ades_past, "datetime", _Moved):
        yield


def _verify(pki: ThrowawayPki, data: bytes, at: datetime, *, live: bool = True):  # type: ignore[no-untyped-def]
    """Our verifier at ``at``, offline (no fetching); ``live``: it also knows the OCSP
    answers our CA gives at ``at`` for its live certificates, and the root's CRL.

    Not the issuing CA's CRL of that day: pyHanko's time slide takes a CRL issued after a
    certificate expired as evidence about that certificate, keeps the control time at
    ``at`` and finds the expired TSA certificate out of bounds."""
    verifier = Verifier(FrozenClock(at), trust_roots=[pki.root],
                        revocation=LiveRevocation(pki, at, ca_crl=False) if live else None)
    with _pyhanko_clock(at):
        return verifier.verify(data)


@pytest.fixture(scope="module")
def pki() -> ThrowawayPki:
    return build_pki()


@pytest.fixture(scope="module")
def short_tsa(pki: ThrowawayPki) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    return _tsa(pki, days=365, serial=0x3001)


@pytest.fixture(scope="module")
def lta(pki: ThrowawayPki) -> bytes:
    service = _service(pki, FROZEN_AT, pki.timestamper(FROZEN_AT))
    return service.sign(permit_pdf(), pki.signer(),
                        PadesRequest(level=Level.B_LTA, stamp=stamp_for())).data


@pytest.fixture(scope="module")
def short_lived(pki: ThrowawayPki, short_tsa) -> bytes:  # type: ignore[no-untyped-def]
    """A B-LTA permit whose time-stamps all come from a TSA certificate of one year."""
    service = _service(pki, FROZEN_AT, _stamper(pki, *short_tsa, FROZEN_AT))
    return service.sign(permit_pdf(), pki.signer(),
                        PadesRequest(level=Level.B_LTA, stamp=stamp_for())).data


@pytest.fixture(scope="module")
def extended(pki: ThrowawayPki, short_lived: bytes) -> bytes:
    """``short_lived`` extended ten months later with the long-lived TSA."""
    at = FROZEN_AT + timedelta(days=300)
    result = _service(pki, at, pki.timestamper(at)).extend(short_lived)
    assert result.archive_timestamps == 2 and result.signatures == 1
    assert result.archive_expires == pki.tsa_cert.not_valid_after_utc
    return result.data


def test_b_lta_has_a_document_timestamp_with_its_own_validation_data(pki, lta) -> None:  # type: ignore[no-untyped-def]
    reader = PdfFileReader(io.BytesIO(lta))
    [stamp] = reader.embedded_timestamp_signatures
    assert stamp.field_name == "ArchiveTimeStamp1"
    # The DSS written after the document time-stamp holds the TSA's chain and a VRI entry
    # for the time-stamp itself.
    dss = reader.root["/DSS"]
    certs = {x509.load_der_x509_certificate(ref.get_object().data).subject
             for ref in dss["/Certs"]}
    assert {pki.tsa_cert.subject, pki.ca.subject} <= certs
    assert len(dss["/VRI"]) >= 1
    report = _verify(pki, lta, FROZEN_AT + timedelta(minutes=5))
    assert report.indication == "TOTAL-PASSED", report.signatures[0].reasons
    assert report.signatures[0].level == "PAdES-B-LTA"


def test_b_lta_verifies_three_years_later(pki, lta) -> None:  # type: ignore[no-untyped-def]
    later = FROZEN_AT + 3 * YEAR + timedelta(days=1)
    assert pki.signer().certificate.not_valid_after_utc < later  # the holder's expired
    report = _verify(pki, lta, later)
    signature = report.signatures[0]
    assert report.indication == "TOTAL-PASSED", signature.reasons
    assert signature.level == "PAdES-B-LTA"
    assert signature.certificate_now.status == "expired"
    assert signature.certificate_at_signing.status == "good"


def test_extension_outlives_the_first_tsa_certificate(pki, short_tsa, short_lived,  # type: ignore[no-untyped-def]
                                                      extended) -> None:
    # The first TSA certificate (one year) and the holder's (three) have both expired.
    after = pki.signer().certificate.not_valid_after_utc + timedelta(days=30)
    assert short_tsa[0].not_valid_after_utc < after
    report = _verify(pki, extended, after)
    assert report.indication == "TOTAL-PASSED", report.signatures[0].reasons
    assert report.signatures[0].level == "PAdES-B-LTA"
    assert len(PdfFileReader(io.BytesIO(extended)).embedded_timestamp_signatures) == 2
    # Without the extension, the same file is no longer provable.
    assert _verify(pki, short_lived, after).indication == "INDETERMINATE"


def test_extend_takes_a_b_t_permit_to_b_lta(pki) -> None:  # type: ignore[no-untyped-def]
    service = _service(pki, FROZEN_AT, pki.timestamper(FROZEN_AT))
    b_t = service.sign(permit_pdf(), pki.signer(), PadesRequest(level=Level.B_T)).data
    extended = service.extend(b_t)
    assert extended.archive_timestamps == 1
    report = _verify(pki, extended.data, FROZEN_AT + timedelta(minutes=5))
    assert report.indication == "TOTAL-PASSED", report.signatures[0].reasons
    assert report.signatures[0].level == "PAdES-B-LTA"


def test_extend_refuses_an_unsigned_pdf(pki) -> None:  # type: ignore[no-untyped-def]
    service = _service(pki, FROZEN_AT, pki.timestamper(FROZEN_AT))
    with pytest.raises(InvalidDocument) as caught:
        service.extend(permit_pdf())
    assert caught.value.extras["reason"] == "unsigned"


def test_outside_tools_accept_b_lta_and_extended(pki, lta, extended,  # type: ignore[no-untyped-def]
                                                 tmp_path: Path) -> None:
    db = make_nss_db(tmp_path / "db", pki.root)
    for data in (lta, extended):
        [signature, *stamps] = pdfsig(data, db, tmp_path)
        assert signature["Signature Validation"] == "Signature is Valid."
        assert signature["Certificate Validation"] == "Certificate is Trusted."
        assert stamps  # pdfsig lists the document time-stamps too
        reader = PdfFileReader(io.BytesIO(data))
        context = ValidationContext(trust_roots=[to_asn1(pki.root)], allow_fetching=False,
                                    revocation_mode="soft-fail")
        status = validate_pdf_signature(reader.embedded_regular_signatures[0],
                                        signer_validation_context=context)
        assert status.bottom_line, status.pretty_print_details()
        for stamp in reader.embedded_timestamp_signatures:
            ts_status = validate_pdf_timestamp(stamp, validation_context=context)
            assert ts_status.valid and ts_status.trusted

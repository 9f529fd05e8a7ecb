"""A throwaway PKI for the PAdES and validation tests, built once per test session.

Software keys (cryptography) stand in for token keys here: pki code cannot tell them apart
(see pki.signer). Root -> issuing CA -> {OCSP responder, TSA, holders}; one holder revoked,
one suspended (certificateHold), one expired; OCSP responses and CRLs signed at FROZEN_AT.
Token-backed signing is tested separately, with SoftHSM.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from asn1crypto import keys as asn1_keys
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.writer import PageObject, PdfFileWriter
from pyhanko.sign.timestamps.dummy_client import DummyTimeStamper
from pyhanko_certvalidator.registry import SimpleCertificateStore

from pki.signer import Signer, to_asn1
from pki.signing.pades import RevocationData
from pki.signing.stamp import StampText

FROZEN_AT = datetime(2026, 3, 16, 9, 30, tzinfo=UTC)
BASE_URL = "http://tawqi.test"


def _name(cn: str, **extra: str) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COUNTRY_NAME, "MA"),
             x509.NameAttribute(NameOID.ORGANIZATION_NAME, extra.pop("o", "Tawqi Test"))]
    for oid, value in extra.items():
        attrs.append(x509.NameAttribute(getattr(NameOID, oid), value))
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    return x509.Name(attrs)


def _ku(**flags: bool) -> x509.KeyUsage:
    names = ("digital_signature", "content_commitment", "key_encipherment",
             "data_encipherment", "key_agreement", "key_cert_sign", "crl_sign",
             "encipher_only", "decipher_only")
    return x509.KeyUsage(**{n: flags.get(n, False) for n in names})


@dataclass
class ThrowawayPki:
    root_key: ec.EllipticCurvePrivateKey
    root: x509.Certificate
    ca_key: ec.EllipticCurvePrivateKey
    ca: x509.Certificate
    ocsp_key: ec.EllipticCurvePrivateKey
    ocsp_cert: x509.Certificate
    tsa_key: rsa.RSAPrivateKey  # pyHanko's DummyTimeStamper signs with RSA only
    tsa_cert: x509.Certificate
    holders: dict[str, Signer] = field(default_factory=dict)
    # serial -> (reason, revocation time); certificateHold is a suspension.
    revoked: dict[int, tuple[x509.ReasonFlags, datetime]] = field(default_factory=dict)

    def signer(self, name: str = "good") -> Signer:
        return self.holders[name]

    def timestamper(self, at: datetime = FROZEN_AT) -> DummyTimeStamper:
        der = self.tsa_key.private_bytes(serialization.Encoding.DER,
                                         serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption())
        return DummyTimeStamper(tsa_cert=to_asn1(self.tsa_cert),
                                tsa_key=asn1_keys.PrivateKeyInfo.load(der),
                                certs_to_embed=SimpleCertificateStore.from_certs(
                                    [to_asn1(self.ca), to_asn1(self.root)]),
                                fixed_dt=at + timedelta(seconds=1))

    # --- revocation -----------------------------------------------------------------

    def ocsp_response(self, cert: x509.Certificate, at: datetime = FROZEN_AT,
                      revoked: dict[int, tuple[x509.ReasonFlags, datetime]] | None = None
                      ) -> bytes:
        builder = ocsp.OCSPResponseBuilder()
        entry = (revoked if revoked is not None else self.revoked).get(cert.serial_number)
        if entry is not None and entry[1] <= at:
            status = ocsp.OCSPCertStatus.REVOKED
            reason, revoked_at = entry
        else:
            status, revoked_at, reason = ocsp.OCSPCertStatus.GOOD, None, None
        builder = builder.add_response(
            cert=cert, issuer=self.ca, algorithm=hashes.SHA1(), cert_status=status,
            this_update=at - timedelta(minutes=5), next_update=at + timedelta(days=1),
            revocation_time=revoked_at, revocation_reason=reason)
        builder = builder.responder_id(ocsp.OCSPResponderEncoding.HASH, self.ocsp_cert)
        builder = builder.certificates([self.ocsp_cert])
        return builder.sign(self.ocsp_key, hashes.SHA256()).public_bytes(
            serialization.Encoding.DER)

    def crl(self, issuer: str = "ca", at: datetime = FROZEN_AT,
            revoked: dict[int, tuple[x509.ReasonFlags, datetime]] | None = None) -> bytes:
        key, cert = (self.ca_key, self.ca) if issuer == "ca" else (self.root_key, self.root)
        # Like pki.profiles: the issuing CA's CRL lives a day, the (offline) root's a year.
        lifetime = timedelta(days=1) if issuer == "ca" else timedelta(days=365)
        builder = (x509.CertificateRevocationListBuilder().issuer_name(cert.subject)
                   .last_update(at - timedelta(minutes=5))
                   .next_update(at + lifetime)
                   .add_extension(x509.CRLNumber(1), critical=False))
        if issuer == "ca":
            table = revoked if revoked is not None else self.revoked
            for serial, (reason, when) in table.items():
                if when > at:
                    continue
                entry = (x509.RevokedCertificateBuilder().serial_number(serial)
                         .revocation_date(when)
                         .add_extension(x509.CRLReason(reason), critical=False))
                builder = builder.add_revoked_certificate(entry.build())
        return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)

    def revocation_source(self, at: datetime = FROZEN_AT,
                          extra: dict[int, tuple[x509.ReasonFlags, datetime]] | None = None
                          ) -> StaticRevocation:
        """Revocation data as published at ``at``; ``extra`` revokes more certificates
        (without touching the shared PKI)."""
        return StaticRevocation(self, at, {**self.revoked, **(extra or {})})


class StaticRevocation:
    """A RevocationSource over the test PKI (OCSP for end entities, CRLs for both CAs),
    signed once, at construction."""

    def __init__(self, pki: ThrowawayPki, at: datetime,
                 revoked: dict[int, tuple[x509.ReasonFlags, datetime]]) -> None:
        self.pki = pki
        self.at = at
        self.calls = 0
        self._crls = (pki.crl("ca", at, revoked), pki.crl("root", at))
        self._ocsp = {cert.serial_number: pki.ocsp_response(cert, at, revoked)
                      for cert in [pki.tsa_cert, *(s.certificate for s in pki.holders.values())]}

    def revocation_data(self, certificates):  # type: ignore[no-untyped-def]
        self.calls += 1
        ocsps = tuple(self._ocsp[c.serial_number] for c in certificates
                      if c.issuer == self.pki.ca.subject and c.serial_number in self._ocsp)
        return RevocationData(ocsps, self._crls)


def _cert(subject: x509.Name, key: Any, issuer: x509.Certificate | None,
          issuer_key: ec.EllipticCurvePrivateKey, *, ca: bool, days: int,
          extensions: list[tuple[x509.ExtensionType, bool]], not_before: datetime,
          serial: int) -> x509.Certificate:
    """A certificate for ``key`` (a private key, or a public key from a token)."""
    public = key.public_key() if hasattr(key, "public_key") else key
    builder = (x509.CertificateBuilder().subject_name(subject)
               .issuer_name(issuer.subject if issuer else subject)
               .public_key(public).serial_number(serial)
               .not_valid_before(not_before).not_valid_after(not_before + timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca and issuer
                                                    else None), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(public),
                              critical=False))
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
                issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value),
            critical=False)
    for ext, critical in extensions:
        builder = builder.add_extension(ext, critical=critical)
    return builder.sign(issuer_key, hashes.SHA256())


def _endpoints() -> list[tuple[x509.ExtensionType, bool]]:
    return [
        (x509.AuthorityInformationAccess([
            x509.AccessDescription(x509.AuthorityInformationAccessOID.OCSP,
                                   x509.UniformResourceIdentifier(f"{BASE_URL}/ocsp")),
            x509.AccessDescription(x509.AuthorityInformationAccessOID.CA_ISSUERS,
                                   x509.UniformResourceIdentifier(f"{BASE_URL}/ca/2.crt"))]),
         False),
        (x509.CRLDistributionPoints([x509.DistributionPoint(
            full_name=[x509.UniformResourceIdentifier(f"{BASE_URL}/crl/2.crl")],
            relative_name=None, reasons=None, crl_issuer=None)]), False),
    ]


# poppler 22.12 (Debian 12) reports a chain "trusted" only when NSS leaves no stale error
# behind; with the holder profile that needs an EKU including emailProtection (NSS's
# "email signer" usage) next to the CRL distribution point. documentSigning is RFC 9336's.
HOLDER_EKU = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION,
                                    x509.ObjectIdentifier("1.3.6.1.5.5.7.3.36")])

HOLDERS = {
    # name: (given, surname, CIN, title, commune)
    "good": ("Mohamed", "El Alaoui", "AB123456", "Président", "Commune d'Al Hoceima"),
    "second": ("Fatima", "Bennani", "K12345", "Vice-présidente", "Commune d'Al Hoceima"),
    "revoked": ("Said", "Amrani", "C765432", "Président", "Commune de Tanger"),
    "suspended": ("Nadia", "Tazi", "D222333", "Présidente", "Commune de Fès"),
    "expired": ("Omar", "Idrissi", "E444555", "Président", "Commune d'Agadir"),
}


@cache
def build_pki() -> ThrowawayPki:
    """The session's PKI (built once per process)."""
    start = FROZEN_AT - timedelta(days=30)
    root_key = ec.generate_private_key(ec.SECP256R1())
    root = _cert(_name("Tawqi Test Root"), root_key, None, root_key, ca=True, days=3650,
                 extensions=[(_ku(key_cert_sign=True, crl_sign=True), True)],
                 not_before=start, serial=0x1001)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_ext = [(_ku(key_cert_sign=True, crl_sign=True), True),
              (x509.CRLDistributionPoints([x509.DistributionPoint(
                  full_name=[x509.UniformResourceIdentifier(f"{BASE_URL}/crl/1.crl")],
                  relative_name=None, reasons=None, crl_issuer=None)]), False)]
    ca = _cert(_name("Tawqi Test Issuing CA"), ca_key, root, root_key, ca=True, days=1825,
               extensions=ca_ext, not_before=start, serial=0x1002)
    ocsp_key = ec.generate_private_key(ec.SECP256R1())
    ocsp_cert = _cert(_name("Tawqi Test OCSP"), ocsp_key, ca, ca_key, ca=False, days=365,
                      extensions=[(_ku(digital_signature=True), True),
                                  (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.OCSP_SIGNING]),
                                   False), (x509.OCSPNoCheck(), False)],
                      not_before=start, serial=0x1003)
    tsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    tsa_cert = _cert(_name("Tawqi Test TSA"), tsa_key, ca, ca_key, ca=False, days=1825,
                     extensions=[(_ku(digital_signature=True), True),
                                 (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]),
                                  True), *_endpoints()],
                     not_before=start, serial=0x1004)
    pki = ThrowawayPki(root_key, root, ca_key, ca, ocsp_key, ocsp_cert, tsa_key, tsa_cert)
    for index, (name, (given, surname, cin, title, org)) in enumerate(HOLDERS.items()):
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([
            x509.NameAttribute(NameOID.COUNTRY_NAME, "MA"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
            x509.NameAttribute(NameOID.TITLE, title),
            x509.NameAttribute(NameOID.SURNAME, surname),
            x509.NameAttribute(NameOID.GIVEN_NAME, given),
            x509.NameAttribute(NameOID.SERIAL_NUMBER, f"IDCMA-{cin}"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"{given} {surname}"),
        ])
        not_before, days = (start - timedelta(days=400), 365) if name == "expired" \
            else (start, 1095)
        cert = _cert(subject, key, ca, ca_key, ca=False, days=days,
                     extensions=[(_ku(content_commitment=True), True), (HOLDER_EKU, False),
                                 *_endpoints()],
                     not_before=not_before, serial=0x2000 + index)
        pki.holders[name] = Signer(key, cert, (ca, root))
        if name == "revoked":
            pki.revoked[cert.serial_number] = (x509.ReasonFlags.affiliation_changed,
                                               FROZEN_AT - timedelta(days=1))
        if name == "suspended":
            pki.revoked[cert.serial_number] = (x509.ReasonFlags.certificate_hold,
                                               FROZEN_AT - timedelta(days=1))
    return pki


def permit_pdf(title: str = "Permis de construire n° 2026/0042", pages: int = 1) -> bytes:
    """A small unsigned PDF standing in for a permit."""
    writer = PdfFileWriter()
    font = generic.DictionaryObject({
        generic.NameObject("/Type"): generic.NameObject("/Font"),
        generic.NameObject("/Subtype"): generic.NameObject("/Type1"),
        generic.NameObject("/BaseFont"): generic.NameObject("/Helvetica"),
        generic.NameObject("/Encoding"): generic.NameObject("/WinAnsiEncoding")})
    resources = generic.DictionaryObject({generic.NameObject("/Font"): generic.DictionaryObject(
        {generic.NameObject("/F1"): font})})
    for number in range(pages):
        text = f"{title} - page {number + 1}".encode("cp1252")
        content = b"BT /F1 16 Tf 72 760 Td (" + text + b") Tj ET"
        page = PageObject(contents=writer.add_object(generic.StreamObject(stream_data=content)),
                          media_box=generic.ArrayObject([generic.NumberObject(v)
                                                         for v in (0, 0, 595, 842)]),
                          resources=resources)
        writer.insert_page(page)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def stamp_for(name: str = "good", at: datetime = FROZEN_AT) -> StampText:
    given, surname, _cin, title, org = HOLDERS[name]
    return StampText(name_fr=f"{given} {surname}", name_ar="محمد العلوي",
                     title_fr=f"{title} du conseil communal", title_ar="رئيس المجلس الجماعي",
                     organisation_fr=org, organisation_ar="جماعة الحسيمة", signed_at=at)


def test_the_test_pki_chains() -> None:
    pki = build_pki()
    signer = pki.signer()
    assert signer.certificate.issuer == pki.ca.subject
    signer.certificate.verify_directly_issued_by(pki.ca)
    pki.ca.verify_directly_issued_by(pki.root)


# --- outside judges -------------------------------------------------------------------


def _require(tool: str, package: str) -> str:
    found = shutil.which(tool)
    if found is None:
        pytest.fail(f"{tool} not found: install {package} (scripts/system-deps.sh)")
    return found


def make_nss_db(directory: Path, *roots: x509.Certificate) -> str:
    """An NSS database trusting ``roots`` for signing (what pdfsig reads); returns the
    ``sql:`` path."""
    certutil = _require("certutil", "libnss3-tools")
    directory.mkdir(parents=True, exist_ok=True)
    db = f"sql:{directory}"
    subprocess.run([certutil, "-N", "-d", db, "--empty-password"], check=True,
                   capture_output=True)
    for index, root in enumerate(roots):
        pem = directory / f"root{index}.pem"
        pem.write_bytes(root.public_bytes(serialization.Encoding.PEM))
        subprocess.run([certutil, "-A", "-d", db, "-n", f"root{index}", "-t", "CT,C,C",
                        "-i", str(pem)], check=True, capture_output=True)
    return db


def pdfsig(pdf: bytes, db: str, directory: Path) -> list[dict[str, str]]:
    """Run poppler's pdfsig (no network OCSP) and return one dict per signature."""
    tool = _require("pdfsig", "poppler-utils")
    path = directory / f"judge-{hashlib.sha256(pdf).hexdigest()[:12]}.pdf"
    path.write_bytes(pdf)
    run = subprocess.run([tool, "-nssdir", db, "-no-ocsp", str(path)], capture_output=True,
                         text=True, check=False)
    signatures: list[dict[str, str]] = []
    for line in run.stdout.splitlines():
        if line.startswith("Signature #"):
            signatures.append({})
        elif line.strip().startswith("- ") and signatures:
            key, _, value = line.strip()[2:].partition(":")
            signatures[-1][key.strip()] = value.strip()
        elif line.strip() in {"- Total document signed", "- Not total document signed"} \
                and signatures:
            signatures[-1]["coverage"] = line.strip()[2:]
    return signatures

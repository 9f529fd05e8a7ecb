"""Pieces that need neither a token nor a database: identities, reasons, serials, the
Signer with software keys, and the profiles under stock pkilint (short policy arc)."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from core.errors import ConfigurationError
from pki import reasons
from pki.authority import SERIAL_BITS, normalise_serial, random_serial
from pki.errors import CertificateNotFound, InvalidHolder, InvalidKeyType
from pki.profiles import (
    HolderIdentity,
    Profile,
    ca_name,
    holder_builder,
    issuing_builder,
    ocsp_builder,
    root_builder,
    tsa_builder,
)
from pki.signer import Signer
from tests.pki.tools import lint

NOW = datetime.datetime(2026, 3, 16, 9, 30, tzinfo=datetime.UTC)
DOC_ARC = "1.3.6.1.4.1.32473.1"  # RFC 5612: the PEN reserved for documentation


def test_holder_identity_normalises_and_validates() -> None:
    holder = HolderIdentity(cin=" ab123456 ", given_name="  Fatima   Zahra ",
                            surname="El Idrissi", title="Présidente",
                            organization="جماعة تيزنيت")
    assert holder.cin == "AB123456" and holder.given_name == "Fatima Zahra"
    assert holder.semantics_identifier == "IDCMA-AB123456"
    for cin in ("", "123456", "ABC123", "A-12", "A123456789", "É12"):
        with pytest.raises(InvalidHolder):
            HolderIdentity(cin=cin, given_name="A", surname="B", title="C", organization="D")
    with pytest.raises(InvalidHolder):
        HolderIdentity(cin="K1", given_name="", surname="B", title="C", organization="D")
    with pytest.raises(InvalidHolder):
        HolderIdentity(cin="K1", given_name="A" * 40, surname="B" * 30, title="C",
                       organization="D")
    with pytest.raises(InvalidHolder):
        HolderIdentity(cin="K1", given_name="A\x00", surname="B", title="C", organization="D")


def test_reasons() -> None:
    assert reasons.canonical("affiliation-changed") == "affiliationChanged"
    assert reasons.canonical("KEY_COMPROMISE") == "keyCompromise"
    assert reasons.code("cessationOfOperation") == 5
    assert reasons.canonical("certificate_hold", allow_hold=True) == "certificateHold"


def test_serials() -> None:
    drawn = {random_serial() for _ in range(200)}
    assert len(drawn) == 200
    assert all(64 < s.bit_length() <= SERIAL_BITS for s in drawn)
    assert normalise_serial("0x00AB:CD") == "abcd"
    with pytest.raises(CertificateNotFound):
        normalise_serial("xyz")


def test_profile_settings() -> None:
    with pytest.raises(ConfigurationError):
        Profile(public_url="http://x", policy_oid="not.an.oid")
    with pytest.raises(ConfigurationError):
        Profile(public_url="ftp://x", policy_oid="2.25.1")
    assert Profile(public_url="http://pki.example/", policy_oid="2.25.1").ocsp_url() == \
        "http://pki.example/ocsp"


def _self_signed(key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "t")])
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1).not_valid_before(NOW)
            .not_valid_after(NOW + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))


def test_signer_checks_its_key_and_picks_the_hash() -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    cert = _self_signed(key)
    signer = Signer(key, cert)
    assert isinstance(signer.hash_algorithm, hashes.SHA384)
    assert signer.signature_algorithm["algorithm"].native == "sha384_ecdsa"
    signature = signer.sign(b"data")
    key.public_key().verify(signature, b"data", ec.ECDSA(hashes.SHA384()))
    with pytest.raises(InvalidKeyType):
        Signer(ec.generate_private_key(ec.SECP256R1()), cert)
    with pytest.raises(InvalidKeyType):
        signer.sign_digest(b"short", hashes.SHA256())


def test_signer_signs_a_batch_of_digests() -> None:
    """sign_digests: one signature per digest, each as sign_digest makes it (EC and RSA)."""
    import hashlib

    from cryptography.hazmat.primitives.asymmetric import padding
    from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

    digests = [hashlib.sha256(b"%d" % i).digest() for i in range(5)]
    ec_key = ec.generate_private_key(ec.SECP256R1())
    for signature, digest in zip(Signer(ec_key, _self_signed(ec_key)).sign_digests(
            digests, hashes.SHA256()), digests, strict=True):
        ec_key.public_key().verify(signature, digest, ec.ECDSA(Prehashed(hashes.SHA256())))
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rsa_signer = Signer(rsa_key, _self_signed(rsa_key))
    batch = rsa_signer.sign_digests(digests, hashes.SHA256())
    assert batch == [rsa_signer.sign_digest(d, hashes.SHA256()) for d in digests]
    for signature, digest in zip(batch, digests, strict=True):
        rsa_key.public_key().verify(signature, digest, padding.PKCS1v15(),
                                    Prehashed(hashes.SHA256()))
    with pytest.raises(InvalidKeyType):
        rsa_signer.sign_digests([*digests, b"short"], hashes.SHA256())



def _root_and_holder() -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey,
                                 x509.Certificate]:
    """A software root and a holder certificate it issued, with the holder's key."""
    root_key = ec.generate_private_key(ec.SECP256R1())
    profile = Profile(public_url="http://pki.tawqi.ma", policy_oid=DOC_ARC)
    root = root_builder(profile, subject=ca_name(profile, "Root"),
                        public_key=root_key.public_key(), serial=random_serial(),
                        not_before=NOW, not_after=NOW + datetime.timedelta(days=3650)
                        ).sign(root_key, hashes.SHA256())
    holder_key = ec.generate_private_key(ec.SECP256R1())
    holder = HolderIdentity(cin="AB1", given_name="Ali", surname="Amrani", title="Président",
                            organization="Commune")
    cert = holder_builder(profile, holder=holder, public_key=holder_key.public_key(),
                          serial=random_serial(), not_before=NOW,
                          not_after=NOW + datetime.timedelta(days=365), issuer=root,
                          issuer_id=1).sign(root_key, hashes.SHA256())
    return root, holder_key, cert

def test_pyhanko_adapter_signs_a_pdf(tmp_path: Path) -> None:
    """pyHanko signs through our Signer (hence, in production, on the token)."""
    from io import BytesIO

    from pyhanko.pdf_utils import generic
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.pdf_utils.writer import PageObject, PdfFileWriter
    from pyhanko.sign import signers
    from pyhanko.sign.validation import validate_pdf_signature
    from pyhanko_certvalidator import ValidationContext

    from pki.signer import pyhanko_signer, to_asn1

    root, holder_key, cert = _root_and_holder()
    signer = pyhanko_signer(Signer(holder_key, cert, (root,)))
    blank = BytesIO()
    writer = PdfFileWriter()
    content = writer.add_object(generic.StreamObject(stream_data=b"BT ET"))
    writer.insert_page(PageObject(contents=content, media_box=[0, 0, 595, 842]))
    writer.write(blank)
    blank.seek(0)
    out = signers.sign_pdf(IncrementalPdfFileWriter(blank),
                           signers.PdfSignatureMetadata(field_name="Sig1"), signer=signer)
    reader = PdfFileReader(out)
    context = ValidationContext(trust_roots=[to_asn1(root)], allow_fetching=False,
                                revocation_mode="soft-fail",
                                moment=NOW + datetime.timedelta(days=1))
    status = validate_pdf_signature(reader.embedded_signatures[0], context)
    assert status.intact and status.valid


def test_pyhanko_adapter_builds_the_cms_of_stock_pyhanko() -> None:
    """The adapter's cached signing-certificate-v2 value changes nothing in the CMS: the
    signed attributes, the certificates and the signer identifier are those stock pyHanko
    builds (a ``SimpleSigner`` with the same certificates), PAdES and not."""
    import asyncio

    from asn1crypto import keys as asn1_keys
    from pyhanko.sign import signers
    from pyhanko.sign.signers.pdf_cms import PdfCMSSignedAttributes
    from pyhanko_certvalidator.registry import SimpleCertificateStore

    from pki import signer as signer_module
    from pki.signer import pyhanko_signer, to_asn1

    root, holder_key, cert = _root_and_holder()
    ours = pyhanko_signer(Signer(holder_key, cert, (root,)))
    stock = signers.SimpleSigner(
        signing_cert=to_asn1(cert), cert_registry=SimpleCertificateStore.from_certs(
            [to_asn1(root)]),
        signing_key=asn1_keys.PrivateKeyInfo.load(holder_key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption())))
    digest = bytes(range(32))
    settings = PdfCMSSignedAttributes(signing_time=NOW)

    def signed(signer: signers.Signer, use_pades: bool) -> Any:
        return asyncio.run(signer.async_sign(digest, "sha256", use_pades=use_pades,
                                             signed_attr_settings=settings))

    for use_pades in (True, False):
        mine, theirs = signed(ours, use_pades), signed(stock, use_pades)
        mine_info = mine["content"]["signer_infos"][0]
        their_info = theirs["content"]["signer_infos"][0]
        assert mine_info["signed_attrs"].dump() == their_info["signed_attrs"].dump()
        for name in ("version", "sid", "digest_algorithm", "signature_algorithm"):
            assert mine_info[name].dump() == their_info[name].dump()
        assert sorted(c.dump() for c in mine["content"]["certificates"]) == \
            sorted(c.dump() for c in theirs["content"]["certificates"])
        assert mine["content"]["digest_algorithms"].dump() == \
            theirs["content"]["digest_algorithms"].dump()
    # The value came from the adapter's cache (pyHanko still calls the hook it overrides).
    assert signer_module._SIGNING_CERTIFICATES.get(to_asn1(cert).dump()) is not None


def test_profiles_pass_stock_pkilint_with_a_short_arc(tmp_path: Path) -> None:
    """The same profile code under pkilint exactly as shipped. Its fast decoder caps OID
    arcs at 32 bits (and refuses 2.999), so this run uses the documentation PEN of RFC 5612
    (1.3.6.1.4.1.32473) instead of our 2.25 UUID arc."""
    profile = Profile(public_url="http://pki.tawqi.ma", policy_oid=DOC_ARC)
    root_key = ec.generate_private_key(ec.SECP256R1())
    root = root_builder(profile, subject=ca_name(profile, "Tawqi Root CA"),
                        public_key=root_key.public_key(), serial=random_serial(),
                        not_before=NOW, not_after=NOW + datetime.timedelta(days=7300)
                        ).sign(root_key, hashes.SHA256())
    ca_key = ec.generate_private_key(ec.SECP256R1())
    issuing = issuing_builder(profile, subject=ca_name(profile, "Tawqi Issuing CA"),
                              public_key=ca_key.public_key(), serial=random_serial(),
                              not_before=NOW, not_after=NOW + datetime.timedelta(days=3650),
                              root=root, root_id=1).sign(root_key, hashes.SHA256())
    holder = HolderIdentity(cin="AB123456", given_name="Fatima", surname="El Idrissi",
                            title="Présidente", organization="جماعة تيزنيت")
    common = {"serial": random_serial(), "not_before": NOW, "issuer": issuing, "issuer_id": 2,
              "not_after": NOW + datetime.timedelta(days=30)}
    leaves = {
        "holder": holder_builder(profile, holder=holder,
                                 public_key=ec.generate_private_key(ec.SECP256R1()).public_key(),
                                 **common),  # type: ignore[arg-type]
        "ocsp": ocsp_builder(profile, subject=ca_name(profile, "OCSP"),
                             public_key=ec.generate_private_key(ec.SECP256R1()).public_key(),
                             **common),  # type: ignore[arg-type]
        "tsa": tsa_builder(profile, subject=ca_name(profile, "TSA"),
                           public_key=rsa.generate_private_key(65537, 2048).public_key(),
                           **common),  # type: ignore[arg-type]
    }

    def write(name: str, cert: x509.Certificate) -> Path:
        path = tmp_path / f"{name}.der"
        path.write_bytes(cert.public_bytes(serialization.Encoding.DER))
        return path

    assert lint("pkix", write("root", root)) == ""
    assert lint("pkix", write("issuing", issuing)) == ""
    for name, builder in leaves.items():
        path = write(name, builder.sign(ca_key, hashes.SHA256()))
        assert lint("pkix", path) == ""
    assert lint("etsi", tmp_path / "holder.der", "-t", "NCP-NATURAL-PERSON-CERTIFICATE",
                ) == ""

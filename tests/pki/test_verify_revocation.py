"""Verification with revocation data from outside the file: fetched from another PKI's CRL
server (a real HTTP server on 127.0.0.1), supplied by the operator in a directory, or
uploaded with the PDF; and the ETSI EN 319 102-1 sub-indications each case gives."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from asn1crypto import cms
from cryptography import x509
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import validate_pdf_signature
from pyhanko_certvalidator import ValidationContext

from core.clock import FrozenClock
from pki.signer import to_asn1
from pki.signing.pades import RevocationData
from pki.signing.revinfo import (
    FetchPolicy,
    FetchRefused,
    HostGuard,
    InvalidRevocationData,
    classify,
    parse_uploaded,
    read_directory,
)
from pki.signing.verification import SignatureReport, Verifier
from tests.pki.outside_pki import OutsidePki, RevocationServer, outside_pki, revocation_server
from tests.pki.test_pades_pki import permit_pdf

_CONTENTS = re.compile(rb"/Contents\s*<([0-9a-fA-F]+)>")


@pytest.fixture
def server() -> Iterator[RevocationServer]:
    with revocation_server() as running:
        yield running


@pytest.fixture
def pki(server: RevocationServer) -> OutsidePki:
    return outside_pki(server.base)


def _now() -> datetime:
    from datetime import UTC

    return datetime.now(UTC).replace(microsecond=0)


#: The test CRL server listens on 127.0.0.1, which fetching reaches only when allowed.
LOCAL = ("127.0.0.1",)


def _verifier(pki: OutsidePki, *, at: datetime | None = None, fetch: bool = True,
              **extra) -> Verifier:  # type: ignore[no-untyped-def]
    policy = extra.pop("policy", FetchPolicy(timeout_seconds=5, allow_hosts=LOCAL))
    return Verifier(FrozenClock(at or _now() + timedelta(minutes=1)),
                    trust_roots=[pki.root.cert], allow_fetching=fetch,
                    fetch_policy=policy, **extra)


def _only(verifier: Verifier, data: bytes, **kw) -> SignatureReport:  # type: ignore[no-untyped-def]
    (sig,) = verifier.verify(data, **kw).signatures
    return sig


def _self_signed(cn: str) -> x509.Certificate:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(_now() - timedelta(days=1))
            .not_valid_after(_now() + timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))


def _replace_contents(data: bytes, der: bytes) -> bytes:
    match = _CONTENTS.search(data)
    assert match is not None
    width = len(match.group(1))
    new = der.hex().encode().ljust(width, b"0")
    assert len(new) == width
    return data[:match.start(1)] + new + data[match.end(1):]


def _cms(data: bytes) -> cms.ContentInfo:
    match = _CONTENTS.search(data)
    assert match is not None
    return cms.ContentInfo.load(bytes.fromhex(match.group(1).decode()).rstrip(b"\0"))


# --------------------------------------------------------------------------- fetching


def test_fetching_makes_an_outside_signature_total_passed(pki, server) -> None:  # type: ignore[no-untyped-def]
    pki.publish(server, _now())
    data = pki.sign(pki.holder())
    sig = _only(_verifier(pki), data)
    assert sig.indication == "TOTAL-PASSED" and sig.sub_indication is None
    assert sig.certificate_now.status == "good"
    assert sig.certificate_at_signing.status == "good"
    assert "/ca.crl" in server.requests and "/root.crl" in server.requests


def test_without_fetching_it_is_try_later(pki, server) -> None:  # type: ignore[no-untyped-def]
    pki.publish(server, _now())
    sig = _only(_verifier(pki, fetch=False), pki.sign(pki.holder()))
    assert sig.indication == "INDETERMINATE" and sig.sub_indication == "TRY_LATER"
    assert sig.certificate_now.status == "unknown"
    assert server.requests == []


def test_fetching_never_reaches_a_local_address_unless_allowed(pki, server) -> None:  # type: ignore[no-untyped-def]
    """SSRF: the certificates of an uploaded PDF name http://127.0.0.1:<port>/ca.crl; without
    the allow-list no request reaches that server, and the answer is try later."""
    pki.publish(server, _now())
    data = pki.sign(pki.holder())
    for allowed in ((), ("localhost",), ("10.0.0.0/8",), ("::1",)):
        policy = FetchPolicy(timeout_seconds=5, allow_hosts=allowed)
        sig = _only(_verifier(pki, policy=policy), data)
        assert sig.indication == "INDETERMINATE" and sig.sub_indication == "TRY_LATER"
        assert sig.certificate_now.status == "unknown"
    assert server.requests == []
    # allowed by address, or by a network holding it
    for allowed in (LOCAL, ("127.0.0.0/8",)):
        policy = FetchPolicy(timeout_seconds=5, allow_hosts=allowed)
        assert _only(_verifier(pki, policy=policy), data).indication == "TOTAL-PASSED"
    assert "/ca.crl" in server.requests


@pytest.mark.parametrize("url", [
    "http://127.0.0.1/x.crl", "http://localhost/x.crl", "http://[::1]/x.crl",
    "http://10.1.2.3/x.crl", "http://192.168.0.1/x.crl", "http://172.16.5.5/x.crl",
    "http://169.254.169.254/latest/meta-data", "http://[fe80::1]/x", "http://224.0.0.1/x",
    "http://0.0.0.0/x", "http://100.64.0.1/x", "http://240.0.0.1/x",
    "http://[::ffff:127.0.0.1]/x", "http://2130706433/x", "http://0x7f.1/x",
    "file:///etc/passwd", "ftp://ftp.example.org/x.crl", "ldap://ldap.example.org/cn=x",
    "http:///x.crl"])
def test_host_guard_refuses(url: str) -> None:
    with pytest.raises(FetchRefused):
        HostGuard.of(()).check_url(url)


def test_host_guard_allow_list() -> None:
    guard = HostGuard.of(["LocalHost.", " 10.0.0.0/8 ", "[::1]"])
    guard.check_url("http://localhost:8080/x.crl")
    guard.check_url("http://10.9.8.7/x.crl")
    guard.check_url("https://[::1]/x.crl")
    with pytest.raises(FetchRefused):
        guard.check_url("http://192.168.1.1/x.crl")
    with pytest.raises(FetchRefused):
        guard.check_address("x", "127.0.0.2")
    guard.check_address("public", "8.8.8.8")


def test_the_connected_address_is_checked_again(pki, server) -> None:  # type: ignore[no-untyped-def]
    """Past the name check (a DNS answer that changed since, say), the socket's own peer
    address is checked before a byte is sent."""
    import requests

    from pki.signing.revinfo import _guarded_session

    pki.publish(server, _now())
    with _guarded_session(HostGuard.of(())) as session, pytest.raises(
            requests.RequestException):
        session.get(server.base + "/ca.crl", timeout=5)
    assert server.requests == []
    with _guarded_session(HostGuard.of(LOCAL)) as session:
        assert session.get(server.base + "/ca.crl", timeout=5).status_code == 200
    assert server.requests == ["/ca.crl"]


def test_local_data_first(pki, server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Fetching on: what the operator's directory or the caller holds settles the
    certificates, so nothing is requested (neither the CRLs nor the holder's OCSP
    responder); with nothing local, both are asked."""
    pki.publish(server, _now())
    holder = pki.holder()
    data = pki.sign(holder)
    (tmp_path / "ca.crl").write_bytes(pki.crl("ca", _now()))
    (tmp_path / "root.crl").write_bytes(pki.crl("root", _now()))
    sig = _only(_verifier(pki, revocation_dir=str(tmp_path)), data)
    assert sig.indication == "TOTAL-PASSED"
    assert server.requests == []
    uploaded = RevocationData(ocsps=(pki.ocsp_good(holder, _now()),),
                              crls=(pki.crl("root", _now()),))
    sig = _only(_verifier(pki), data, revocation=uploaded)
    assert sig.indication == "TOTAL-PASSED" and sig.certificate_now.status == "good"
    assert server.requests == []
    sig = _only(_verifier(pki), data)
    assert sig.indication == "TOTAL-PASSED"
    assert {"POST /ocsp", "/ca.crl", "/root.crl"} <= set(server.requests)


def test_unreachable_crl_is_try_later(pki, server) -> None:  # type: ignore[no-untyped-def]
    data = pki.sign(pki.holder())  # nothing published: the server answers 404
    sig = _only(_verifier(pki), data)
    assert sig.indication == "INDETERMINATE" and sig.sub_indication == "TRY_LATER"
    assert "/root.crl" in server.requests


def test_oversized_crl_is_refused(pki, server) -> None:  # type: ignore[no-untyped-def]
    pki.publish(server, _now())
    server.padding = b"\0" * 200_000
    small = FetchPolicy(timeout_seconds=5, max_response_bytes=100_000, allow_hosts=LOCAL)
    sig = _only(_verifier(pki, policy=small), pki.sign(pki.holder()))
    assert sig.sub_indication == "TRY_LATER"
    assert "/root.crl" in server.requests


def test_slow_crl_server_times_out(pki, server) -> None:  # type: ignore[no-untyped-def]
    pki.publish(server, _now())
    server.delay = 3
    quick = FetchPolicy(timeout_seconds=0.5)
    sig = _only(_verifier(pki, policy=quick), pki.sign(pki.holder()))
    assert sig.sub_indication == "TRY_LATER"


# --------------------------------------------------------------------------- sub-indications


def test_revoked_signer_is_revoked_no_poe(pki, server) -> None:  # type: ignore[no-untyped-def]
    holder = pki.holder()
    data = pki.sign(holder)
    when = _now() - timedelta(minutes=1)
    pki.revoke(holder, when, x509.ReasonFlags.affiliation_changed)
    pki.publish(server, _now())
    sig = _only(_verifier(pki), data)
    assert sig.indication == "INDETERMINATE" and sig.sub_indication == "REVOKED_NO_POE"
    assert sig.certificate_now.status == "revoked"
    assert sig.certificate_now.reason == "affiliation_changed"
    assert sig.certificate_now.revoked_at == when


def test_revoked_ca_is_revoked_ca_no_poe(pki, server) -> None:  # type: ignore[no-untyped-def]
    data = pki.sign(pki.holder())
    pki.revoke(pki.ca, _now() - timedelta(minutes=1), x509.ReasonFlags.ca_compromise)
    pki.publish(server, _now())
    sig = _only(_verifier(pki), data)
    assert sig.indication == "INDETERMINATE" and sig.sub_indication == "REVOKED_CA_NO_POE"
    assert sig.certificate_now.status == "revoked"


def test_expired_signer_is_out_of_bounds_no_poe(pki, server) -> None:  # type: ignore[no-untyped-def]
    data = pki.sign(pki.holder(days=5))  # valid until 3 days from now
    later = _now() + timedelta(days=10)
    pki.publish(server, later - timedelta(hours=1))
    sig = _only(_verifier(pki, at=later), data)
    assert sig.indication == "INDETERMINATE" and sig.sub_indication == "OUT_OF_BOUNDS_NO_POE"
    assert sig.certificate_now.status == "expired"
    assert sig.certificate_at_signing.status == "good"


def test_untrusted_root_is_no_certificate_chain_found(pki, server) -> None:  # type: ignore[no-untyped-def]
    pki.publish(server, _now())
    elsewhere = Verifier(FrozenClock(_now()), trust_roots=[_self_signed("Autre Racine")],
                         allow_fetching=True,
                         fetch_policy=FetchPolicy(timeout_seconds=5, allow_hosts=LOCAL))
    sig = _only(elsewhere, pki.sign(pki.holder()))
    assert sig.indication == "INDETERMINATE"
    assert sig.sub_indication == "NO_CERTIFICATE_CHAIN_FOUND"
    assert sig.certificate_now.status == "untrusted"


def test_changed_bytes_are_hash_failure(pki, server) -> None:  # type: ignore[no-untyped-def]
    pki.publish(server, _now())
    data = pki.sign(pki.holder())
    index = data.index(b"Facture")
    tampered = data[:index] + b"Fucture" + data[index + 7:]
    sig = _only(_verifier(pki), tampered)
    assert sig.indication == "TOTAL-FAILED" and sig.sub_indication == "HASH_FAILURE"
    assert not sig.integrity


def test_altered_signature_value_is_sig_crypto_failure(pki, server) -> None:  # type: ignore[no-untyped-def]
    pki.publish(server, _now())
    data = pki.sign(pki.holder())
    message = _cms(data)
    signer_info = message["content"]["signer_infos"][0]
    value = bytearray(signer_info["signature"].native)
    value[-1] ^= 0x01  # the last byte of the ECDSA 's': still DER, no longer a signature
    signer_info["signature"] = bytes(value)
    sig = _only(_verifier(pki), _replace_contents(data, message.dump(force=True)))
    assert sig.indication == "TOTAL-FAILED" and sig.sub_indication == "SIG_CRYPTO_FAILURE"
    assert not sig.integrity


@pytest.mark.parametrize("garbage", [b"\x30\x03\x02\x01", b"not a CMS signature at all"])
def test_corrupted_signature_value_is_format_failure(pki, server, garbage: bytes) -> None:  # type: ignore[no-untyped-def]
    pki.publish(server, _now())
    data = _replace_contents(pki.sign(pki.holder()), garbage)
    report = _verifier(pki).verify(data)
    assert report.signed and report.indication == "TOTAL-FAILED"
    (sig,) = report.signatures
    assert sig.field_name == "Ailleurs"
    assert sig.indication == "TOTAL-FAILED" and sig.sub_indication == "FORMAT_FAILURE"
    assert report.to_dict()["signed"] is True


def test_unsigned_pdf_says_signed_false(pki) -> None:  # type: ignore[no-untyped-def]
    report = _verifier(pki, fetch=False).verify(permit_pdf())
    assert not report.signed and report.to_dict()["signed"] is False


def test_stale_crl_is_try_later(pki, server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A CRL past its nextUpdate (and nothing newer to fetch): try later."""
    data = pki.sign(pki.holder())
    later = _now() + timedelta(days=20)
    (tmp_path / "ca.crl").write_bytes(pki.crl("ca", _now(), days=7))
    (tmp_path / "root.crl").write_bytes(pki.crl("root", _now(), days=7))
    sig = _only(_verifier(pki, at=later, fetch=False, revocation_dir=str(tmp_path)), data)
    assert sig.indication == "INDETERMINATE" and sig.sub_indication == "TRY_LATER"


# --------------------------------------------------------------------------- supplied data


def test_operator_directory_is_used_without_fetching(pki, server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data = pki.sign(pki.holder())
    (tmp_path / "ca.crl").write_bytes(pki.crl("ca", _now()))
    pem = x509.load_der_x509_crl(pki.crl("root", _now())).public_bytes(
        __import__("cryptography.hazmat.primitives.serialization",
                   fromlist=["Encoding"]).Encoding.PEM)
    (tmp_path / "root.pem").write_bytes(pem)
    (tmp_path / "notes.txt").write_text("not revocation data")
    known = read_directory(tmp_path)
    assert len(known.crls) == 2 and known.ocsps == ()
    sig = _only(_verifier(pki, fetch=False, revocation_dir=str(tmp_path)), data)
    assert sig.indication == "TOTAL-PASSED"
    assert server.requests == []


def test_uploaded_crl_and_ocsp_are_used(pki, server) -> None:  # type: ignore[no-untyped-def]
    holder = pki.holder()
    data = pki.sign(holder)
    uploaded = parse_uploaded([("holder.ocsp", pki.ocsp_good(holder, _now())),
                               ("root.crl", pki.crl("root", _now()))])
    assert len(uploaded.ocsps) == 1 and len(uploaded.crls) == 1
    sig = _only(_verifier(pki, fetch=False), data, revocation=uploaded)
    assert sig.indication == "TOTAL-PASSED"
    assert sig.certificate_now.status == "good"
    assert server.requests == []


def test_uploaded_revocation_from_a_stranger_does_not_count(pki, server) -> None:  # type: ignore[no-untyped-def]
    """A CRL signed by another CA of the same name is not the CA's CRL."""
    data = pki.sign(pki.holder())
    impostor = outside_pki(server.base)
    forged = RevocationData(crls=(impostor.crl("ca", _now()), impostor.crl("root", _now())))
    sig = _only(_verifier(pki, fetch=False), data, revocation=forged)
    assert sig.indication == "INDETERMINATE"


def test_uploaded_garbage_is_refused() -> None:
    assert classify(b"hello") is None
    with pytest.raises(InvalidRevocationData) as caught:
        parse_uploaded([("x.crl", b"hello")])
    assert caught.value.status == 422 and "x.crl" in caught.value.detail


# --------------------------------------------------------------------------- cross-check


def test_pyhanko_validator_agrees(pki, server) -> None:  # type: ignore[no-untyped-def]
    """pyHanko's own validator, fetching from the same server, on the same files."""
    pki.publish(server, _now())
    good = pki.sign(pki.holder())
    revoked_holder = pki.holder("Paul Durand")
    revoked = pki.sign(revoked_holder)
    pki.revoke(revoked_holder, _now() - timedelta(minutes=1))
    pki.publish(server, _now())

    def pyhanko(data: bytes):  # type: ignore[no-untyped-def]
        context = ValidationContext(trust_roots=[to_asn1(pki.root.cert)],
                                    allow_fetching=True)
        (embedded,) = PdfFileReader(__import__("io").BytesIO(data)).embedded_signatures
        return validate_pdf_signature(embedded, context)

    ours = _verifier(pki)
    status = pyhanko(good)
    assert status.bottom_line and status.trusted and not status.revoked
    assert _only(ours, good).indication == "TOTAL-PASSED"
    status = pyhanko(revoked)
    assert status.intact and status.valid and status.revoked and not status.bottom_line
    assert _only(ours, revoked).sub_indication == "REVOKED_NO_POE"
    index = good.index(b"Facture")
    tampered = good[:index] + b"Fucture" + good[index + 7:]
    status = pyhanko(tampered)
    assert not status.intact and not status.bottom_line
    assert _only(ours, tampered).sub_indication == "HASH_FAILURE"
    message = _cms(good)
    signer_info = message["content"]["signer_infos"][0]
    value = bytearray(signer_info["signature"].native)
    value[-1] ^= 0x01
    signer_info["signature"] = bytes(value)
    forged = _replace_contents(good, message.dump(force=True))
    status = pyhanko(forged)
    assert status.intact and not status.valid and not status.bottom_line
    assert _only(ours, forged).sub_indication == "SIG_CRYPTO_FAILURE"


def test_an_intermediate_as_anchor_changes_the_answer(pki, server) -> None:  # type: ignore[no-untyped-def]
    """Why TAWQI_VERIFY_TRUST_ANCHORS takes roots only: an issuing CA given as an anchor
    ends the path, so its own revocation is never seen (and pyHanko then cannot establish
    a chain for the CRLs that CA signs: TRY_LATER instead of REVOKED_CA_NO_POE)."""
    data = pki.sign(pki.holder())
    pki.revoke(pki.ca, _now() - timedelta(minutes=1), x509.ReasonFlags.ca_compromise)
    pki.publish(server, _now())
    assert _only(_verifier(pki), data).sub_indication == "REVOKED_CA_NO_POE"
    wrong = Verifier(FrozenClock(_now() + timedelta(minutes=1)), trust_roots=[pki.ca.cert],
                     allow_fetching=True)
    sig = _only(wrong, data)
    assert (sig.indication, sig.sub_indication) == ("INDETERMINATE", "TRY_LATER")
    assert sig.certificate_now.status == "unknown"

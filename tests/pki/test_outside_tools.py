"""What outside tools say about what we issue: pkilint on every profile, CRL and an OCSP
response; openssl verify with CRL checks on the whole chain."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy.orm import Session

from pki import crl, ocsp
from pki.authority import Authority
from pki.lifecycle import certificate_der
from tests.pki.conftest import World, same_connection
from tests.pki.tools import lint, lint_chain, openssl

pytestmark = pytest.mark.hsm

WriteFile = Callable[[str, bytes], Path]


def _pem(der: bytes) -> bytes:
    return x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM)


def _crl_pem(der: bytes) -> bytes:
    return x509.load_der_x509_crl(der).public_bytes(serialization.Encoding.PEM)


def test_pkilint_ca_certificates(world: World, write_file: WriteFile) -> None:
    assert lint("pkix", write_file("root.der", world.init.root_der)) == ""
    assert lint("pkix", write_file("issuing.der", world.init.issuing_der)) == ""


def test_pkilint_holder_certificate_pkix_and_etsi(world: World, pki_session: Session,
                                                  write_file: WriteFile) -> None:
    path = write_file("holder.der", certificate_der(pki_session, world.serials["good"]))
    assert lint("pkix", path) == ""
    assert lint("etsi", path, "-t", "NCP-NATURAL-PERSON-CERTIFICATE") == ""


def test_pkilint_arabic_organisation(world: World, pki_session: Session,
                                     write_file: WriteFile) -> None:
    path = write_file("holder-ar.der", certificate_der(pki_session, world.serials["revoked"]))
    assert lint("etsi", path, "-t", "NCP-NATURAL-PERSON-CERTIFICATE") == ""


def test_pkilint_ocsp_and_tsa_certificates(world: World, pki_session: Session,
                                           write_file: WriteFile) -> None:
    for name, serial in (("ocsp", world.init.ocsp_serial), ("tsa", world.init.tsa_serial)):
        assert lint("pkix", write_file(f"{name}.der", certificate_der(pki_session, serial))) \
            == ""


def test_pkilint_chains(world: World, pki_session: Session, write_file: WriteFile) -> None:
    """Stock pkilint's chain linter on every issuer/subject pair we make (it used to crash on
    the 128-bit UUID arc)."""
    root = write_file("chain-root.der", world.init.root_der)
    issuing = write_file("chain-issuing.der", world.init.issuing_der)
    assert lint_chain(root, issuing) == ""
    for name, serial in (("holder", world.serials["good"]), ("ocsp", world.init.ocsp_serial),
                         ("tsa", world.init.tsa_serial)):
        leaf = write_file(f"chain-{name}.der", certificate_der(pki_session, serial))
        assert lint_chain(issuing, leaf) == ""


def test_pkilint_crls(world: World, pki_session: Session, write_file: WriteFile) -> None:
    issuing = crl.latest_crl(pki_session, world.init.issuing_id)
    assert issuing.entries == 2  # the revoked and the suspended holder
    assert lint("crl", write_file("issuing.crl", issuing.der), "-t", "CRL", "-p", "PKIX") == ""
    root = crl.latest_crl(pki_session, world.init.root_id)
    assert lint("crl", write_file("root.crl", root.der), "-t", "CRL", "-p", "PKIX") == ""


@pytest.mark.parametrize("which", ["good", "revoked", "suspended"])
def test_pkilint_ocsp_responses(world: World, pki_session: Session, authority: Authority,
                                write_file: WriteFile, which: str) -> None:
    request = ocsp.canonical_request(authority.name_hash, authority.key_hash,
                                     int(world.serials[which], 16))
    responder = ocsp.OcspResponder(same_connection(pki_session), world.clock)
    answer = responder.respond(request)
    assert answer.signed
    assert lint("ocsp", write_file(f"{which}.ocsp", answer.der)) == ""


def test_openssl_verify_with_crls(world: World, pki_session: Session,
                                  write_file: WriteFile) -> None:
    root = write_file("root.pem", _pem(world.init.root_der))
    issuing = write_file("issuing.pem", _pem(world.init.issuing_der))
    crls = [write_file("issuing.crl.pem",
                       _crl_pem(crl.latest_crl(pki_session, world.init.issuing_id).der)),
            write_file("root.crl.pem",
                       _crl_pem(crl.latest_crl(pki_session, world.init.root_id).der))]
    base = ["verify", "-CAfile", root, "-untrusted", issuing, "-crl_check_all"]
    for crl_path in crls:
        base += ["-CRLfile", crl_path]
    good = write_file("good.pem", _pem(certificate_der(pki_session, world.serials["good"])))
    assert "OK" in openssl(*base, good).stdout
    for which, reason in (("revoked", "certificate revoked"),
                          ("suspended", "certificate revoked")):
        path = write_file(f"{which}.pem",
                          _pem(certificate_der(pki_session, world.serials[which])))
        result = openssl(*base, path, check=False)
        assert result.returncode != 0
        assert reason in (result.stdout + result.stderr)
    # The issuing CA itself, against the root's CRL.
    assert "OK" in openssl("verify", "-CAfile", root, "-crl_check", "-CRLfile", crls[1],
                           issuing).stdout

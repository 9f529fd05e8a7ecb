"""Another PKI than ours, for verification tests: a root and an issuing CA made with
``cryptography``, holders signing with pyHanko's ``SimpleSigner``, and the CAs' CRLs served
over HTTP on 127.0.0.1 by a small ``http.server`` in a thread (the URLs are in the
certificates' CRL distribution points)."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from asn1crypto import keys as asn1_keys
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from cryptography.x509.oid import NameOID
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.sign import fields, signers
from pyhanko_certvalidator.registry import SimpleCertificateStore

from pki.signer import to_asn1
from tests.pki.test_pades_pki import permit_pdf


class RevocationServer:
    """Serves ``files`` (path → bytes) over HTTP; records the paths asked (``POST <path>``
    for a POST, which gets 404). ``delay``:
    seconds to wait before answering; ``padding``: bytes appended to every answer."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: list[str] = []
        self.delay = 0.0
        self.padding = b""
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append(self.path)
                if server.delay:
                    time.sleep(server.delay)
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                body += server.padding
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/pkix-crl")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def do_POST(self) -> None:  # an OCSP request: recorded, answered 404
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                server.requests.append("POST " + self.path)
                self.send_error(404)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def start(self) -> RevocationServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


@contextmanager
def revocation_server() -> Iterator[RevocationServer]:
    server = RevocationServer().start()
    try:
        yield server
    finally:
        server.stop()


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "FR"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Ailleurs SA"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


@dataclass
class Party:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey


@dataclass
class OutsidePki:
    """Root → issuing CA → holders. ``revoked[issuer_cn]``: serial → (reason, date)."""

    base_url: str
    start: datetime
    root: Party = field(init=False)
    ca: Party = field(init=False)
    revoked: dict[str, dict[int, tuple[x509.ReasonFlags, datetime]]] = field(
        default_factory=lambda: {"root": {}, "ca": {}})

    def __post_init__(self) -> None:
        root_key = ec.generate_private_key(ec.SECP256R1())
        root = (self._builder(_name("Ailleurs Root"), _name("Ailleurs Root"),
                              root_key.public_key(), self.start + timedelta(days=3650))
                .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
                .add_extension(x509.KeyUsage(False, False, False, False, False, True, True,
                                             False, False), critical=True)
                .sign(root_key, hashes.SHA256()))
        self.root = Party(root, root_key)
        self.ca = self._issue_ca()

    def _builder(self, subject: x509.Name, issuer: x509.Name, public_key: object,
                 not_after: datetime, not_before: datetime | None = None
                 ) -> x509.CertificateBuilder:
        return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
                .public_key(public_key)  # type: ignore[arg-type]
                .serial_number(x509.random_serial_number())
                .not_valid_before(not_before or self.start).not_valid_after(not_after))

    def _crl_dp(self, path: str) -> x509.CRLDistributionPoints:
        return x509.CRLDistributionPoints([x509.DistributionPoint(
            full_name=[x509.UniformResourceIdentifier(self.base_url + path)],
            relative_name=None, reasons=None, crl_issuer=None)])

    def _issue_ca(self) -> Party:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (self._builder(_name("Ailleurs Issuing CA"), self.root.cert.subject,
                              key.public_key(), self.start + timedelta(days=1825))
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(x509.KeyUsage(False, False, False, False, False, True, True,
                                             False, False), critical=True)
                .add_extension(self._crl_dp("/root.crl"), critical=False)
                .sign(self.root.key, hashes.SHA256()))
        return Party(cert, key)

    def holder(self, cn: str = "Jeanne Martin", *, days: int = 365,
               not_before: datetime | None = None) -> Party:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([*_name(cn),
                             x509.NameAttribute(NameOID.SERIAL_NUMBER, "PASFR-12AB34567")])
        begin = not_before or self.start
        cert = (self._builder(subject, self.ca.cert.subject, key.public_key(),
                              begin + timedelta(days=days), begin)
                .add_extension(x509.KeyUsage(True, True, False, False, False, False, False,
                                             False, False), critical=True)
                .add_extension(self._crl_dp("/ca.crl"), critical=False)
                .add_extension(x509.AuthorityInformationAccess([x509.AccessDescription(
                    x509.AuthorityInformationAccessOID.OCSP,
                    x509.UniformResourceIdentifier(self.base_url + "/ocsp"))]),
                    critical=False)
                .sign(self.ca.key, hashes.SHA256()))
        return Party(cert, key)

    def revoke(self, party: Party, when: datetime,
               reason: x509.ReasonFlags = x509.ReasonFlags.key_compromise) -> None:
        issuer = "root" if party.cert.issuer == self.root.cert.subject else "ca"
        self.revoked[issuer][party.cert.serial_number] = (reason, when)

    def crl(self, issuer: str, at: datetime, *, days: int = 7) -> bytes:
        """The DER CRL of ``issuer`` ("root" or "ca") issued at ``at``."""
        party = self.root if issuer == "root" else self.ca
        builder = (x509.CertificateRevocationListBuilder().issuer_name(party.cert.subject)
                   .last_update(at).next_update(at + timedelta(days=days))
                   .add_extension(x509.CRLNumber(int(at.timestamp())), critical=False))
        for serial, (reason, when) in self.revoked[issuer].items():
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when)
                .add_extension(x509.CRLReason(reason), critical=False).build())
        return builder.sign(party.key, hashes.SHA256()).public_bytes(
            serialization.Encoding.DER)

    def ocsp_good(self, party: Party, at: datetime) -> bytes:
        """A DER OCSP response 'good' for ``party``, signed by its CA directly."""
        builder = ocsp.OCSPResponseBuilder().add_response(
            cert=party.cert, issuer=self.ca.cert, algorithm=hashes.SHA256(),
            cert_status=ocsp.OCSPCertStatus.GOOD, this_update=at,
            next_update=at + timedelta(days=1), revocation_time=None, revocation_reason=None
        ).responder_id(ocsp.OCSPResponderEncoding.HASH, self.ca.cert)
        return builder.sign(self.ca.key, hashes.SHA256()).public_bytes(
            serialization.Encoding.DER)

    def publish(self, server: RevocationServer, at: datetime) -> None:
        server.files["/root.crl"] = self.crl("root", at)
        server.files["/ca.crl"] = self.crl("ca", at)

    def sign(self, party: Party, text: str = "Facture", *, field_name: str = "Ailleurs"
             ) -> bytes:
        """A PAdES B-B signature (no time-stamp) of a small PDF, at the system's time."""
        pkcs8 = party.key.private_bytes(serialization.Encoding.DER,
                                        serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption())
        signer = signers.SimpleSigner(
            signing_cert=to_asn1(party.cert),
            signing_key=asn1_keys.PrivateKeyInfo.load(pkcs8),
            cert_registry=SimpleCertificateStore.from_certs([to_asn1(self.ca.cert)]))
        meta = signers.PdfSignatureMetadata(field_name=field_name,
                                            subfilter=fields.SigSeedSubFilter.PADES)
        out = signers.sign_pdf(IncrementalPdfFileWriter(io.BytesIO(permit_pdf(text))), meta,
                               signer=signer)
        return out.getvalue()


def outside_pki(base_url: str, at: datetime | None = None) -> OutsidePki:
    """A PKI whose certificates start two days before ``at`` (default: now)."""
    at = at or datetime.now(UTC).replace(microsecond=0)
    return OutsidePki(base_url, at - timedelta(days=2))

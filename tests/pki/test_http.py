"""The public endpoints over real HTTP on 127.0.0.1, judged by openssl and pkilint.

The responder runs in-process (werkzeug's server in a thread) over the session's test PKI
(these tests do not hold a database session open while the server works: see _certificate);
openssl is the client: ``openssl ocsp`` (POST) for good, revoked, unknown and another CA's
certificate, ``openssl ts`` for time-stamps.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import os
import random
import socket
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp as x509_ocsp
from cryptography.x509.oid import NameOID
from sqlalchemy import select
from werkzeug.serving import make_server

from api.app import create_app
from api.runtime import Runtime
from api.wiring import Wiring
from core.config import Settings
from core.db import make_session_factory
from pki import ocsp
from pki.lifecycle import certificate_der
from pki.models import OcspRecord
from pki.signer import public_key_sha1
from tests.pki.conftest import World
from tests.pki.tools import lint, openssl

pytestmark = pytest.mark.hsm

WriteFile = Callable[[str, bytes], Path]


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="module")
def server(pki_world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    world = pki_world
    settings = Settings(var_dir=tmp_path_factory.mktemp("var"), pkcs11_server="off",
                        public_url=world.profile.public_url,
                        policy_oid=world.profile.policy_oid)
    rt = Runtime(settings, clock=world.clock, engine=world.engine)
    with make_session_factory(world.engine)() as session:
        authority = world.authority(session)
    # The test PKI's keys are already loaded: the composition root takes them as they are.
    app = create_app(wiring=Wiring(rt, overrides={"authority": authority}))
    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}"
    finally:
        httpd.shutdown()
        thread.join(5)


def _ocsp(world: World, base: str, write_file: WriteFile, serial: str, *,
          issuer: x509.Certificate | None = None, name: str = "q") -> str:
    issuer_path = write_file(f"{name}-issuer.pem", _pem(issuer or world.issuing))
    root = write_file("root.pem", _pem(world.root))
    chain = write_file("chain.pem", _pem(world.issuing))
    result = openssl("ocsp", "-issuer", issuer_path, "-serial", f"0x{serial}",
                     "-url", f"{base}/ocsp", "-CAfile", root, "-verify_other", chain,
                     "-no_nonce", "-respout", write_file(f"{name}.resp", b"").as_posix(),
                     check=False)
    return result.stdout + result.stderr


def test_openssl_ocsp_good_revoked_unknown(world: World, server: str,
                                           write_file: WriteFile, tmp_path: Path) -> None:
    good = _ocsp(world, server, write_file, world.serials["good"], name="good")
    assert "Response verify OK" in good and f"0x{world.serials['good']}: good" in good
    revoked = _ocsp(world, server, write_file, world.serials["revoked"], name="revoked")
    assert "Response verify OK" in revoked
    assert ": revoked" in revoked and "Reason: affiliationChanged" in revoked
    held = _ocsp(world, server, write_file, world.serials["suspended"], name="held")
    assert ": revoked" in held and "Reason: certificateHold" in held
    unknown_serial = "1234567890abcdef1234"
    unknown = _ocsp(world, server, write_file, unknown_serial, name="unknown")
    assert "Response verify OK" in unknown and f"0x{unknown_serial}: unknown" in unknown
    for name in ("good", "revoked", "unknown"):
        assert lint("ocsp", tmp_path / f"{name}.resp") == ""


def test_openssl_ocsp_other_ca_is_unauthorized(world: World, server: str,
                                               write_file: WriteFile) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Somebody else's CA")])
    now = datetime.datetime.now(datetime.UTC)
    other = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
             .public_key(key.public_key()).serial_number(1)
             .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
             .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
             .sign(key, hashes.SHA256()))
    out = _ocsp(world, server, write_file, "1f", issuer=other, name="other")
    assert "Responder Error: unauthorized" in out


def _certificate(world: World, which: str) -> x509.Certificate:
    # A short session of its own: on SQLite every transaction takes the write lock, and the
    # server thread must be able to read while the test runs.
    with make_session_factory(world.engine)() as session:
        return x509.load_der_x509_certificate(certificate_der(session, world.serials[which]))


def test_ocsp_get_rfc5019_with_cache_headers(world: World, server: str) -> None:
    cert = _certificate(world, "good")
    request = x509_ocsp.OCSPRequestBuilder().add_certificate(
        cert, world.issuing, hashes.SHA1()).build()
    der = request.public_bytes(serialization.Encoding.DER)
    path = urllib.parse.quote(base64.b64encode(der).decode(), safe="")
    reply = requests.get(f"{server}/ocsp/{path}", timeout=10)
    assert reply.status_code == 200
    assert reply.headers["Content-Type"] == "application/ocsp-response"
    assert "max-age=" in reply.headers["Cache-Control"] and reply.headers["ETag"]
    parsed = x509_ocsp.load_der_ocsp_response(reply.content)
    assert parsed.response_status == x509_ocsp.OCSPResponseStatus.SUCCESSFUL
    assert parsed.certificate_status == x509_ocsp.OCSPCertStatus.GOOD
    assert parsed.serial_number == cert.serial_number
    # The canonical request we export static files for is byte-identical.
    authority_hashes = (world.issuing.subject.public_bytes(), public_key_sha1(world.issuing))
    assert authority_hashes[1] == parsed.issuer_key_hash
    # Garbage gets an unsigned malformedRequest, still HTTP 200 (RFC 6960 A.1).
    bad = requests.post(f"{server}/ocsp", data=b"\x30\x03\x02\x01\x01", timeout=10,
                        headers={"Content-Type": "application/ocsp-request"})
    assert bad.status_code == 200 and bad.content == ocsp.MALFORMED


def test_ocsp_sha256_certid_is_signed_live(world: World, server: str) -> None:
    cert = _certificate(world, "revoked")
    der = x509_ocsp.OCSPRequestBuilder().add_certificate(
        cert, world.issuing, hashes.SHA256()).build().public_bytes(serialization.Encoding.DER)
    reply = requests.post(f"{server}/ocsp", data=der, timeout=10,
                          headers={"Content-Type": "application/ocsp-request"})
    parsed = x509_ocsp.load_der_ocsp_response(reply.content)
    assert parsed.certificate_status == x509_ocsp.OCSPCertStatus.REVOKED
    assert parsed.revocation_reason == x509.ReasonFlags.affiliation_changed
    assert isinstance(parsed.hash_algorithm, hashes.SHA256)


def test_crl_and_ca_certificates_served(world: World, server: str) -> None:
    crl_reply = requests.get(f"{server}/crl/{world.init.issuing_id}.crl", timeout=10)
    assert crl_reply.status_code == 200
    assert crl_reply.headers["Content-Type"] == "application/pkix-crl"
    crl = x509.load_der_x509_crl(crl_reply.content)
    assert crl.is_signature_valid(world.issuing.public_key())  # type: ignore[arg-type]
    assert crl.get_revoked_certificate_by_serial_number(int(world.serials["revoked"], 16))
    root_reply = requests.get(f"{server}/ca/{world.init.root_id}.crt", timeout=10)
    assert root_reply.content == world.init.root_der
    assert requests.get(f"{server}/crl/999.crl", timeout=10).status_code == 404


def test_openssl_ts_verify(world: World, server: str, write_file: WriteFile,
                           tmp_path: Path) -> None:
    data = write_file("permit.pdf", b"%PDF-1.7 permit 2026/0042, commune de Tiznit")
    query = tmp_path / "request.tsq"
    openssl("ts", "-query", "-data", data, "-sha256", "-cert", "-out", query)
    reply = requests.post(f"{server}/tsa", data=query.read_bytes(), timeout=10,
                          headers={"Content-Type": "application/timestamp-query"})
    assert reply.status_code == 200
    assert reply.headers["Content-Type"] == "application/timestamp-reply"
    response = write_file("reply.tsr", reply.content)
    text = openssl("ts", "-reply", "-in", response, "-text").stdout
    assert "Status: Granted." in text and world.profile.policy_oid + ".3" in text
    ca_file = write_file("ts-chain.pem", _pem(world.root) + _pem(world.issuing))
    verified = openssl("ts", "-verify", "-data", data, "-in", response, "-CAfile", ca_file)
    assert "Verification: OK" in verified.stdout
    # A tampered document does not verify.
    other = write_file("other.pdf", b"%PDF-1.7 another permit")
    assert openssl("ts", "-verify", "-data", other, "-in", response, "-CAfile", ca_file,
                   check=False).returncode != 0
    # The wrong media type is refused with a problem response.
    refused = requests.post(f"{server}/tsa", data=b"x", timeout=10,
                            headers={"Content-Type": "text/plain"})
    assert refused.status_code == 415
    assert refused.headers["Content-Type"].startswith("application/problem+json")


@contextlib.contextmanager
def _nginx_on_export(world: World) -> Iterator[str]:
    """nginx (Debian's) serving ``tawqi ocsp export`` with the lines of the generated
    ``nginx.conf.example``, as the stack's front does; ended by its pid."""
    import shutil
    import subprocess
    import tempfile
    import time

    root = Path(tempfile.mkdtemp(prefix="tawqi-nginx-"))
    root.chmod(0o755)  # nginx's workers (nobody) read the export
    with make_session_factory(world.engine)() as session:
        ocsp.export_static(session, world.clock, root / "export")
    for sub in root.rglob("*"):
        sub.chmod(0o755 if sub.is_dir() else 0o644)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    user = "user nobody nogroup;\n" if os.geteuid() == 0 else ""
    (root / "nginx.conf").write_text(
        f"{user}worker_processes 1;\npid {root}/nginx.pid;\ndaemon off;\n"
        f"error_log {root}/error.log;\nevents {{ worker_connections 64; }}\n"
        f"http {{ access_log off; client_body_temp_path {root}/tmp;\n"
        f"  proxy_temp_path {root}/tmp; fastcgi_temp_path {root}/tmp;\n"
        f"  uwsgi_temp_path {root}/tmp; scgi_temp_path {root}/tmp;\n"
        f"  server {{ listen 127.0.0.1:{port}; merge_slashes off; root {root}/export;\n"
        "    location /ocsp/ { default_type application/ocsp-response;\n"
        "      try_files $uri.der =404; } } }\n")
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    process = subprocess.Popen([nginx, "-p", str(root), "-c", str(root / "nginx.conf"),
                                "-e", str(root / "error.log")], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port),
                                                                        timeout=1):
                break
            assert process.poll() is None, (root / "error.log").read_text()
            assert time.monotonic() < deadline, "nginx did not start"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.parametrize("form", ["percent-encoded", "percent-encoded, lower case",
                                  "slashes left plain", "plain, with '//'"])
def test_nginx_serves_the_export_in_every_path_form(world: World, form: str) -> None:
    """The static home of OCSP at volume (api/ocsp_server.py is retired): every exported
    answer, good and revoked, reached by each form of the RFC 5019 GET path, is the
    pre-signed answer itself."""
    from pki.authority import sha1

    issuer = world.issuing
    with _nginx_on_export(world) as base, make_session_factory(world.engine)() as session:
        for kind in ("good", "revoked"):
            der = ocsp.canonical_request(sha1(issuer.subject.public_bytes()),
                                         public_key_sha1(issuer),
                                         int(world.serials[kind], 16))
            b64 = base64.b64encode(der).decode()
            body = _raw_get(base, "/ocsp/" + PATH_FORMS[form](b64))
            stored = session.scalar(select(OcspRecord.der).where(
                OcspRecord.serial == world.serials[kind]))
            assert body == stored
            answer = x509_ocsp.load_der_ocsp_response(body)
            assert answer.certificate_status.name.lower() == kind



def test_static_export_maps_get_paths_to_files(world: World, tmp_path: Path) -> None:
    with make_session_factory(world.engine)() as session:
        report = ocsp.export_static(session, world.clock, tmp_path / "www")
    assert report.files >= 5
    issuer = world.issuing
    from pki.authority import sha1

    for which in ("good", "revoked"):
        der = ocsp.canonical_request(sha1(issuer.subject.public_bytes()),
                                     public_key_sha1(issuer), int(world.serials[which], 16))
        # What a web server does: URL-decode the path, then look up "<path>.der".
        decoded = urllib.parse.unquote(f"/ocsp/{ocsp.get_path(der)}")
        file = Path(os.path.normpath(str(tmp_path / "www") + decoded + ".der"))
        response = x509_ocsp.load_der_ocsp_response(file.read_bytes())
        assert response.serial_number == int(world.serials[which], 16)
    assert "try_files $uri.der" in (tmp_path / "www" / "nginx.conf.example").read_text()


def test_get_with_raw_slashes_in_base64(world: World, server: str) -> None:
    """Some clients send the base64 without URL-encoding it: '//' must not be merged."""
    from pki.authority import sha1

    issuer = world.issuing
    name_hash, key_hash = sha1(issuer.subject.public_bytes()), public_key_sha1(issuer)
    rng = random.Random(2)
    serial = rng.getrandbits(150)
    while "//" not in base64.b64encode(ocsp.canonical_request(name_hash, key_hash, serial)) \
            .decode():
        serial = rng.getrandbits(150)
    raw = base64.b64encode(ocsp.canonical_request(name_hash, key_hash, serial)).decode()
    reply = requests.get(f"{server}/ocsp/{raw}", timeout=10, allow_redirects=False)
    assert reply.status_code == 200
    parsed = x509_ocsp.load_der_ocsp_response(reply.content)
    assert parsed.response_status == x509_ocsp.OCSPResponseStatus.SUCCESSFUL
    assert parsed.certificate_status == x509_ocsp.OCSPCertStatus.UNKNOWN
    assert parsed.serial_number == serial


def _awkward_request(world: World) -> bytes:
    """A canonical request whose base64 holds '+', '/' and '//' at once."""
    from pki.authority import sha1

    issuer = world.issuing
    name_hash, key_hash = sha1(issuer.subject.public_bytes()), public_key_sha1(issuer)
    rng = random.Random(7)
    while True:
        der = ocsp.canonical_request(name_hash, key_hash, rng.getrandbits(150))
        text = base64.b64encode(der).decode()
        if "+" in text and "//" in text:
            return der


PATH_FORMS = {
    # RFC 5019 clients URL-encode the whole base64 ('+' -> %2B, '/' -> %2F, '=' -> %3D)
    "percent-encoded": lambda b64: urllib.parse.quote(b64, safe=""),
    "percent-encoded, lower case": lambda b64: urllib.parse.quote(b64, safe="").replace(
        "%2B", "%2b").replace("%2F", "%2f").replace("%3D", "%3d"),
    # others encode all but '/' (urllib's default), or send the base64 as it is
    "slashes left plain": lambda b64: urllib.parse.quote(b64),
    "plain, with '//'": lambda b64: b64,
}


def _raw_get(base: str, path: str) -> bytes:
    """GET ``path`` byte for byte (an HTTP client library would re-normalise it)."""
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    assert b" 200 " in head.split(b"\r\n")[0], (base, path, head)
    return body


@pytest.mark.parametrize("form", PATH_FORMS)
def test_ocsp_get_path_forms_on_the_route(world: World, server: str, form: str) -> None:
    """Every form of the GET path (percent-encoded in either case, '/' left plain, raw base64
    with '//') reaches the responder as the same request on the Flask route. The request
    names a serial we never issued: the route signs 'unknown' live. (nginx serving the
    export: test_nginx_serves_the_export_in_every_path_form.)"""
    b64 = base64.b64encode(_awkward_request(world)).decode()
    path = "/ocsp/" + PATH_FORMS[form](b64)
    routed = x509_ocsp.load_der_ocsp_response(_raw_get(server, path))
    assert routed.response_status == x509_ocsp.OCSPResponseStatus.SUCCESSFUL
    assert routed.certificate_status == x509_ocsp.OCSPCertStatus.UNKNOWN

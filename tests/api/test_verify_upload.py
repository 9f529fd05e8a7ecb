"""POST /v1/verify with revocation data: uploaded with the PDF (multipart files, JSON base64),
fetched from another PKI's CRL server when TAWQI_VERIFY_FETCH_REVOCATION allows it; reports
of unsigned and broken files; a chunked upload over the limit through a real HTTP server."""

from __future__ import annotations

import base64
import http.client
import io
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.serving import make_server

from api.runtime import Runtime
from core.clock import FrozenClock
from tests.api.conftest import Caller
from tests.pki.outside_pki import OutsidePki, RevocationServer, outside_pki, revocation_server
from tests.pki.test_pades_pki import permit_pdf
from tests.pki.test_verify_revocation import _replace_contents


@pytest.fixture
def server() -> Iterator[RevocationServer]:
    with revocation_server() as running:
        yield running


@pytest.fixture
def elsewhere(server: RevocationServer, clock: FrozenClock) -> OutsidePki:
    return outside_pki(server.base, clock.now() - timedelta(minutes=1))


def _configure(rt: Runtime, tmp_path: Path, pki: OutsidePki, **changes: Any) -> None:
    """Trust the outside root (TAWQI_VERIFY_TRUST_ANCHORS), before the app builds its
    verifier."""
    anchors = tmp_path / "anchors.pem"
    anchors.write_bytes(pki.root.cert.public_bytes(serialization.Encoding.PEM))
    rt.settings = rt.settings.replace(verify_trust_anchors=str(anchors), **changes)


@pytest.fixture
def platform(callers: dict[str, Caller]) -> Caller:
    return callers["platform"]


def published(rt: Runtime) -> datetime:
    """When the outside PKI publishes: a minute before the app's clock."""
    return rt.clock.now() - timedelta(minutes=1)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_uploaded_revocation_data_is_used(client: FlaskClient, platform: Caller,
                                          api_runtime: Runtime, tmp_path: Path,
                                          elsewhere: OutsidePki,
                                          server: RevocationServer) -> None:
    _configure(api_runtime, tmp_path, elsewhere)
    holder = elsewhere.holder(days=3650)
    pdf = elsewhere.sign(holder)
    alone = client.post("/v1/verify", data=pdf, content_type="application/pdf",
                        headers=platform.headers).get_json()
    assert alone["signed"] is True
    assert alone["signatures"][0]["sub_indication"] == "TRY_LATER"

    at = published(api_runtime)
    crls = [elsewhere.crl("ca", at), elsewhere.crl("root", at)]
    multipart = client.post("/v1/verify", headers=platform.headers,
                            content_type="multipart/form-data", data={
                                "document": (io.BytesIO(pdf), "facture.pdf"),
                                "revocation": [(io.BytesIO(crls[0]), "ca.crl"),
                                               (io.BytesIO(crls[1]), "root.crl")]})
    assert multipart.status_code == 200, multipart.get_json()
    assert multipart.get_json()["indication"] == "TOTAL-PASSED"

    as_json = client.post("/v1/verify", headers=platform.headers, json={
        "document": _b64(pdf),
        "revocation": [_b64(elsewhere.ocsp_good(holder, at)), _b64(crls[1])]})
    assert as_json.status_code == 200, as_json.get_json()
    sig = as_json.get_json()["signatures"][0]
    assert sig["indication"] == "TOTAL-PASSED" and sig["certificate_now"]["status"] == "good"
    assert server.requests == []  # fetching is off

    garbage = client.post("/v1/verify", headers=platform.headers,
                          content_type="multipart/form-data", data={
                              "document": (io.BytesIO(pdf), "facture.pdf"),
                              "revocation": (io.BytesIO(b"not a CRL"), "x.crl")})
    assert garbage.status_code == 422
    assert garbage.get_json()["type"].endswith("/pki-invalid-revocation-data")
    bad_base64 = client.post("/v1/verify", headers=platform.headers,
                             json={"document": "%%%"})
    assert bad_base64.status_code == 422 and bad_base64.get_json()["field"] == "document"
    too_many = client.post("/v1/verify", headers=platform.headers, json={
        "document": _b64(pdf), "revocation": [_b64(crls[0])] * 21})
    assert too_many.status_code == 422
    assert client.post("/v1/verify", headers=platform.headers, data=b"{}",
                       content_type="text/plain").status_code == 415


def test_fetching_over_http_when_allowed(client: FlaskClient, platform: Caller,
                                         api_runtime: Runtime, tmp_path: Path,
                                         elsewhere: OutsidePki,
                                         server: RevocationServer) -> None:
    # The CRL server is on 127.0.0.1: reached only because the allow-list names it.
    _configure(api_runtime, tmp_path, elsewhere, verify_fetch_revocation=True,
               verify_fetch_timeout_seconds=5,
               verify_fetch_allow_hosts="localhost, 127.0.0.1")
    elsewhere.publish(server, published(api_runtime))
    pdf = elsewhere.sign(elsewhere.holder(days=3650))
    report = client.post("/v1/verify", data=pdf, content_type="application/pdf",
                         headers=platform.headers).get_json()
    assert report["indication"] == "TOTAL-PASSED", report
    assert "/ca.crl" in server.requests


def test_fetching_does_not_reach_local_addresses(client: FlaskClient, platform: Caller,
                                                 api_runtime: Runtime, tmp_path: Path,
                                                 elsewhere: OutsidePki,
                                                 server: RevocationServer) -> None:
    """SSRF: anyone may upload a PDF whose certificates name internal URLs; without
    TAWQI_VERIFY_FETCH_ALLOW_HOSTS none is requested."""
    _configure(api_runtime, tmp_path, elsewhere, verify_fetch_revocation=True,
               verify_fetch_timeout_seconds=5)
    elsewhere.publish(server, published(api_runtime))
    pdf = elsewhere.sign(elsewhere.holder(days=3650))
    report = client.post("/v1/verify", data=pdf, content_type="application/pdf",
                         headers=platform.headers).get_json()
    assert report["signatures"][0]["sub_indication"] == "TRY_LATER", report
    assert server.requests == []


def test_unsigned_and_broken_signatures_are_reports(client: FlaskClient, platform: Caller,
                                                    api_runtime: Runtime, tmp_path: Path,
                                                    elsewhere: OutsidePki) -> None:
    _configure(api_runtime, tmp_path, elsewhere)
    unsigned = client.post("/v1/verify", data=permit_pdf(), content_type="application/pdf",
                           headers=platform.headers)
    assert unsigned.status_code == 200
    body = unsigned.get_json()
    assert body["signed"] is False and body["signatures"] == [] and body["indication"] is None
    signed = elsewhere.sign(elsewhere.holder(days=3650))
    broken = _replace_contents(signed, b"\x30\x03\x02\x01")
    answer = client.post("/v1/verify", data=broken, content_type="application/pdf",
                         headers=platform.headers)
    assert answer.status_code == 200, answer.get_json()
    body = answer.get_json()
    assert body["signed"] is True and body["indication"] == "TOTAL-FAILED"
    assert body["signatures"][0]["sub_indication"] == "FORMAT_FAILURE"


@pytest.fixture
def served(app: Flask, api_runtime: Runtime) -> Iterator[int]:
    """The app behind werkzeug's HTTP server in a thread (real sockets, real chunking)."""
    api_runtime.settings = api_runtime.settings.replace(max_upload_mb=1)
    app.config["MAX_CONTENT_LENGTH"] = 1024 * 1024
    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd.server_port
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def _chunked(port: int, headers: dict[str, str], content_type: str, body: bytes
             ) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        # An iterable body without Content-Length: http.client sends it chunked.
        chunks = (body[i:i + 65536] for i in range(0, len(body), 65536))
        connection.request("POST", "/v1/verify", body=chunks,
                           headers={**headers, "Content-Type": content_type},
                           encode_chunked=True)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_chunked_upload_over_the_limit_is_413(served: int, platform: Caller) -> None:
    big = permit_pdf() + b"%" + b"0" * (2 * 1024 * 1024)
    status, body = _chunked(served, platform.headers, "application/pdf", big)
    assert status == 413, body
    boundary = "tawqi-boundary"
    form = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"document\"; "
            f"filename=\"big.pdf\"\r\nContent-Type: application/pdf\r\n\r\n").encode() \
        + big + f"\r\n--{boundary}--\r\n".encode()
    status, body = _chunked(served, platform.headers,
                            f"multipart/form-data; boundary={boundary}", form)
    assert status == 413, body
    status, body = _chunked(served, platform.headers, "application/json",
                            b'{"document": "' + base64.b64encode(big) + b'"}')
    assert status == 413, body
    status, body = _chunked(served, platform.headers, "application/pdf", permit_pdf())
    assert status == 200, body  # under the limit, chunked works


def test_operator_revocation_directory(client: FlaskClient, platform: Caller,
                                       api_runtime: Runtime, tmp_path: Path,
                                       elsewhere: OutsidePki,
                                       server: RevocationServer) -> None:
    folder = tmp_path / "revocation"
    folder.mkdir()
    _configure(api_runtime, tmp_path, elsewhere, verify_revocation_dir=str(folder))
    pdf = elsewhere.sign(elsewhere.holder(days=3650))
    before = client.post("/v1/verify", data=pdf, content_type="application/pdf",
                         headers=platform.headers).get_json()
    assert before["signatures"][0]["sub_indication"] == "TRY_LATER"
    at = published(api_runtime)
    (folder / "ca.crl").write_bytes(elsewhere.crl("ca", at))
    (folder / "root.crl").write_bytes(elsewhere.crl("root", at))
    after = client.post("/v1/verify", data=pdf, content_type="application/pdf",
                        headers=platform.headers).get_json()
    assert after["indication"] == "TOTAL-PASSED"  # read at each verification
    assert server.requests == []

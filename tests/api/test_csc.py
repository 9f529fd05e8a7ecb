"""Remote signing over HTTP (/csc/v2) and verification (/v1/verify), end to end: a hosted
token personalised by the app's own collaborators, its PIN and the signing code read from
the SMS the outbox sent (console backend), PAdES through our TSA and CA records."""

from __future__ import annotations

import base64
import hashlib
import html
import io
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, utils
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from werkzeug.test import TestResponse

from api import accounts
from api.runtime import Runtime
from api.wiring.flaskapp import wiring as app_wiring
from delivery import personalisation, pins, requests
from delivery.backends import ConsoleEmailBackend, ConsoleInbox, ConsoleSmsBackend
from delivery.outbox import OutboxWorker
from hsm import generate_pin
from pki import lifecycle
from pki.ca import load_authority
from pki.models import AuthorityRecord
from pki.profiles import Profile
from tests.api.conftest import PROVINCE, Caller, provision_service_tokens
from tests.delivery.conftest import make_contact, make_holder
from tests.pki.broken_pdfs import broken
from tests.pki.test_pades_pki import make_nss_db, pdfsig, permit_pdf
from tests.pki.test_validation import _foreign_pdf

COMMUNE = "01.051.03.01"
SHA256 = "2.16.840.1.101.3.4.2.1"


@dataclass
class Hosted:
    holder_id: int
    cin: str
    serial: str
    pin: str
    request_id: int
    mobile: str


class Sms:
    """The phone: drains the outbox and reads the last message sent to a number."""

    def __init__(self, rt: Runtime, app: Flask) -> None:
        self.rt = rt
        self.app = app
        self.inbox = ConsoleInbox()

    def read(self, mobile: str, pattern: str) -> str:
        worker = OutboxWorker(self.rt.sessions, self.rt.clock,
                              sms=ConsoleSmsBackend(self.inbox), email=ConsoleEmailBackend(),
                              sealer=app_wiring(self.app).sealer())
        worker.drain()
        for channel, body in reversed(self.inbox.for_recipient(mobile)):
            found = re.search(pattern, body)
            if channel == "sms" and found:
                return found.group(1)
        raise AssertionError(f"no SMS matching {pattern!r} to {mobile}")


def make_hosted(rt: Runtime, app: Flask, sms: Sms) -> Hosted:
    """A holder with a hosted token: personalised, activated, terms accepted, PIN changed."""
    provision_service_tokens(rt)
    wiring = app_wiring(app)
    with app.app_context():
        personaliser, sealer = wiring.personaliser(), wiring.sealer()
    clock = rt.clock
    with rt.unit_of_work() as session:
        contact = make_contact(session, clock, PROVINCE)
        holder = make_holder(session, clock, COMMUNE, contact=contact)
        request = requests.submit_request(session, clock, contact_id=contact.id,
                                          holder_id=holder.id, token_form="hosted",
                                          actor="test", year=2026)
        requests.approve_request(session, clock, request.id, actor="test",
                                 identity_check="CIN checked")
        personalisation.personalise_request(session, clock, request.id,
                                            personaliser=personaliser, sealer=sealer,
                                            actor="test", policy=wiring.policy)
        requests.activate_request(session, clock, request.id, actor="test")
        requests.accept_terms(session, clock, request.id, version=rt.settings.terms_version,
                              actor="holder")
        ids = (holder.id, holder.cin, holder.mobile, request.id)
    holder_id, cin, mobile, request_id = ids
    initial = sms.read(mobile, r"^(\d+) : code PIN")
    pin = generate_pin(6)
    pins.change_pin(rt.sessions, clock, rt.tokens(), request_id, old_pin=initial, new_pin=pin,
                    actor="holder")
    with rt.unit_of_work() as session:
        serial = requests.get_request(session, request_id).certificate_serial
    assert serial
    return Hosted(holder_id, cin, serial, pin, request_id, mobile)


@pytest.fixture
def sms(api_runtime: Runtime, app: Flask) -> Sms:
    return Sms(api_runtime, app)


@pytest.fixture
def hosted(api_runtime: Runtime, app: Flask, sms: Sms) -> Hosted:
    return make_hosted(api_runtime, app, sms)


@pytest.fixture
def platform(callers: dict[str, Caller]) -> Caller:
    return callers["platform"]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _post(client: FlaskClient, caller: Caller, path: str, body: dict) -> TestResponse:
    return client.post(path, json=body, headers=caller.headers)


def authorize(client: FlaskClient, caller: Caller, hosted: Hosted, sms: Sms, *,
              hashes_: list[bytes] | None = None, document: bytes | None = None,
              pin: str | None = None) -> dict:
    sent = _post(client, caller, "/csc/v2/credentials/sendOTP",
                 {"credentialID": hosted.serial})
    assert sent.status_code == 200, sent.get_json()
    code = sms.read(hosted.mobile, r"^(\d{6}) : code de signature")
    body: dict = {"credentialID": hosted.serial, "PIN": pin or hosted.pin, "OTP": code}
    if document is not None:
        body["documentDigests"] = [_b64(hashlib.sha256(document).digest())]
    else:
        body["hashes"] = [_b64(h) for h in hashes_ or []]
        body["numSignatures"] = len(hashes_ or [])
    answer = _post(client, caller, "/csc/v2/credentials/authorize", body)
    found: dict = answer.get_json()
    found["_status"] = answer.status_code
    return found


def test_info_is_public(client: FlaskClient) -> None:
    answer = client.post("/csc/v2/info")
    assert answer.status_code == 200
    assert "signatures/signHash" in answer.get_json()["methods"]
    assert answer.get_json()["maxHashes"] == 1000


def test_list_and_info(client: FlaskClient, platform: Caller, hosted: Hosted,
                       callers: dict[str, Caller], api_runtime: Runtime) -> None:
    listed = _post(client, platform, "/csc/v2/credentials/list",
                   {"userID": hosted.cin, "credInfo": True, "certificates": "chain",
                    "certInfo": True, "authInfo": True})
    assert listed.status_code == 200, listed.get_json()
    data = listed.get_json()
    assert data["credentialIDs"] == [hosted.serial]
    info = data["credentialInfos"][0]
    assert info["cert"]["status"] == "valid" and len(info["cert"]["certificates"]) == 3
    assert info["key"]["status"] == "enabled" and "1.2.840.10045.4.3.2" in info["key"]["algo"]
    assert info["auth"]["expression"] == "PIN AND OTP"
    leaf = x509.load_der_x509_certificate(base64.b64decode(info["cert"]["certificates"][0]))
    assert format(leaf.serial_number, "x") == hosted.serial
    # A holder lists their own credentials without naming themselves; not someone else's.
    holder = callers["holder"]
    with api_runtime.unit_of_work() as session:
        accounts.link_holder(session, api_runtime.clock, holder.principal_id,
                             hosted.holder_id, actor="test")
    own = _post(client, holder, "/csc/v2/credentials/list", {})
    assert own.get_json()["credentialIDs"] == [hosted.serial]
    other = _post(client, holder, "/csc/v2/credentials/list", {"userID": "ZZ1"})
    assert other.status_code == 403


def test_sign_hashes_over_http(client: FlaskClient, platform: Caller, hosted: Hosted,
                               sms: Sms) -> None:
    digests = [hashlib.sha256(f"permit {i}".encode()).digest() for i in range(20)]
    granted = authorize(client, platform, hosted, sms, hashes_=digests)
    assert granted["_status"] == 200, granted
    assert 0 < granted["expiresIn"] <= 300
    body = {"credentialID": hosted.serial, "SAD": granted["SAD"],
            "hashes": [_b64(d) for d in digests], "hashAlgorithmOID": SHA256,
            "signAlgo": "1.2.840.10045.4.3.2"}
    signed = _post(client, platform, "/csc/v2/signatures/signHash", body)
    assert signed.status_code == 200, signed.get_json()
    info = _post(client, platform, "/csc/v2/credentials/info",
                 {"credentialID": hosted.serial}).get_json()
    cert = x509.load_der_x509_certificate(base64.b64decode(info["cert"]["certificates"][0]))
    public = cert.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    for digest, signature in zip(digests, signed.get_json()["signatures"], strict=True):
        public.verify(base64.b64decode(signature), digest,
                      ec.ECDSA(utils.Prehashed(hashes.SHA256())))
    replay = _post(client, platform, "/csc/v2/signatures/signHash", body)
    assert replay.status_code == 403
    assert replay.get_json()["type"].endswith("/signing-sad-invalid")


def test_sad_for_other_hashes_is_refused(client: FlaskClient, platform: Caller,
                                        hosted: Hosted, sms: Sms) -> None:
    granted = authorize(client, platform, hosted, sms, hashes_=[b"\x01" * 32])
    answer = _post(client, platform, "/csc/v2/signatures/signHash",
                   {"credentialID": hosted.serial, "SAD": granted["SAD"],
                    "hashes": [_b64(b"\x02" * 32)]})
    assert answer.status_code == 403
    assert answer.get_json()["type"].endswith("/signing-sad-mismatch")


def test_wrong_pin_counts_and_wrong_code_stops(client: FlaskClient, platform: Caller,
                                               hosted: Hosted, sms: Sms) -> None:
    wrong = authorize(client, platform, hosted, sms, hashes_=[b"\x03" * 32],
                      pin="000000" if hosted.pin != "000000" else "111111")
    assert wrong["_status"] == 403 and wrong["type"].endswith("/pin-incorrect")
    assert wrong["attempts_left"] == 4
    _post(client, platform, "/csc/v2/credentials/sendOTP", {"credentialID": hosted.serial})
    code = sms.read(hosted.mobile, r"^(\d{6}) : code de signature")
    bad = _post(client, platform, "/csc/v2/credentials/authorize",
                {"credentialID": hosted.serial, "PIN": hosted.pin,
                 "OTP": "000000" if code != "000000" else "111111",
                 "hashes": [_b64(b"\x03" * 32)]})
    assert bad.status_code == 403 and bad.get_json()["type"].endswith("/signing-otp-invalid")


def test_revoked_certificate_signs_nothing(client: FlaskClient, platform: Caller,
                                           hosted: Hosted, sms: Sms,
                                           api_runtime: Runtime) -> None:
    granted = authorize(client, platform, hosted, sms, hashes_=[b"\x04" * 32])
    settings = api_runtime.settings
    with api_runtime.unit_of_work() as session:
        authority = load_authority(session, api_runtime.tokens(),
                                   Profile.from_settings(settings), pin=settings.service_pin)
        lifecycle.revoke(session, api_runtime.clock, authority, hosted.serial,
                         "affiliation-changed", actor="operator")
    answer = _post(client, platform, "/csc/v2/signatures/signHash",
                   {"credentialID": hosted.serial, "SAD": granted["SAD"],
                    "hashes": [_b64(b"\x04" * 32)]})
    assert answer.status_code == 409
    assert answer.get_json()["type"].endswith("/signing-credential-unusable")
    again = _post(client, platform, "/csc/v2/credentials/sendOTP",
                  {"credentialID": hosted.serial})
    assert again.status_code == 409
    assert again.get_json()["current_status"] == "revoked"


@pytest.mark.slow
def test_sign_document_then_verify(client: FlaskClient, platform: Caller, hosted: Hosted,
                                   sms: Sms, api_runtime: Runtime, tmp_path: Path) -> None:
    document = permit_pdf()
    granted = authorize(client, platform, hosted, sms, document=document)
    assert granted["_status"] == 200, granted
    signed = client.post("/csc/v2/signatures/signDoc", headers=platform.headers,
                         content_type="multipart/form-data", data={
                             "credentialID": hosted.serial, "SAD": granted["SAD"],
                             "conformance_level": "AdES-B-LT",
                             "document": (io.BytesIO(document), "permit.pdf")})
    assert signed.status_code == 200, signed.get_json()
    assert signed.mimetype == "application/pdf"
    assert signed.headers["X-Signature-Level"] == "PAdES-B-LT"
    pdf = signed.data
    report = client.post("/v1/verify", data=pdf, content_type="application/pdf",
                         headers=platform.headers)
    assert report.status_code == 200, report.get_json()
    data = report.get_json()
    assert data["indication"] == "TOTAL-PASSED", data
    sig = data["signatures"][0]
    assert sig["signer"]["cin"] == hosted.cin
    assert sig["level"] == "PAdES-B-LT"
    assert sig["certificate_now"]["status"] == "good"
    with api_runtime.unit_of_work() as session:
        root = session.scalars(select(AuthorityRecord)
                               .where(AuthorityRecord.kind == "root")).first()
        assert root is not None
        root_cert = x509.load_der_x509_certificate(root.der)
    (judged,) = pdfsig(pdf, make_nss_db(tmp_path / "nss", root_cert), tmp_path)
    assert judged["Signature Validation"] == "Signature is Valid."
    assert judged["Certificate Validation"] == "Certificate is Trusted."
    # The same SAD again, or another document: refused.
    again = client.post("/csc/v2/signatures/signDoc", headers=platform.headers,
                        content_type="multipart/form-data", data={
                            "credentialID": hosted.serial, "SAD": granted["SAD"],
                            "document": (io.BytesIO(document), "permit.pdf")})
    assert again.status_code == 403
    # The stamp's QR code leads to the signature's public status page, without login.
    link = signed.headers["X-Signature-Status"]
    assert re.fullmatch(r"/s/[A-Za-z0-9_-]{22}", link)
    moved = client.get(link)
    assert moved.status_code == 302 and moved.headers["Location"] == "/web" + link
    client.set_cookie("tawqi_lang", "fr", path="/web")
    shown = client.get("/web" + link)
    assert shown.status_code == 200
    text = html.unescape(shown.get_data(as_text=True))
    assert "Certificat aujourd'hui" in text and ">valide<" in text and "/web/verify" in text
    assert hosted.cin not in text and hosted.serial not in text
    client.set_cookie("tawqi_lang", "ar", path="/web")
    text = client.get("/web" + link).get_data(as_text=True)
    assert "صالحة" in text and "توقيع إلكتروني" in text
    unknown = client.get("/web/s/" + "A" * 22)
    assert unknown.status_code == 404 and "<html" in unknown.get_data(as_text=True)


@pytest.mark.slow
def test_sign_b_lta_then_extend_then_verify(client: FlaskClient, platform: Caller,
                                            hosted: Hosted, sms: Sms, api_runtime: Runtime,
                                            tmp_path: Path) -> None:
    """signDoc at AdES-B-LTA, then POST /v1/extend adds a second archive time-stamp; the
    report says PAdES-B-LTA and TOTAL-PASSED, pdfsig accepts the file."""
    document = permit_pdf("Permis n° 2026/0101")
    granted = authorize(client, platform, hosted, sms, document=document)
    assert granted["_status"] == 200, granted
    signed = client.post("/csc/v2/signatures/signDoc", headers=platform.headers,
                         content_type="multipart/form-data", data={
                             "credentialID": hosted.serial, "SAD": granted["SAD"],
                             "conformance_level": "AdES-B-LTA",
                             "document": (io.BytesIO(document), "permit.pdf")})
    assert signed.status_code == 200, signed.get_json()
    assert signed.headers["X-Signature-Level"] == "PAdES-B-LTA"
    extended = client.post("/v1/extend", data=signed.data, content_type="application/pdf",
                           headers=platform.headers)
    assert extended.status_code == 200, extended.get_json()
    assert extended.headers["X-Archive-Timestamp-Field"] == "ArchiveTimeStamp2"
    assert extended.headers["X-Archive-Expires"]
    report = client.post("/v1/verify", data=extended.data, content_type="application/pdf",
                         headers=platform.headers).get_json()
    assert report["indication"] == "TOTAL-PASSED", report
    assert report["signatures"][0]["level"] == "PAdES-B-LTA"
    unsigned = client.post("/v1/extend", data=permit_pdf(), content_type="application/pdf",
                           headers=platform.headers)
    assert unsigned.status_code == 422 and unsigned.get_json()["reason"] == "unsigned"
    with api_runtime.unit_of_work() as session:
        root = session.scalars(select(AuthorityRecord)
                               .where(AuthorityRecord.kind == "root")).first()
        assert root is not None
        root_cert = x509.load_der_x509_certificate(root.der)
    judged = pdfsig(extended.data, make_nss_db(tmp_path / "nss", root_cert), tmp_path)
    assert judged[0]["Signature Validation"] == "Signature is Valid."
    assert judged[0]["Certificate Validation"] == "Certificate is Trusted."


def test_sign_doc_refuses_a_looping_page_tree_and_keeps_the_sad(
        client: FlaskClient, platform: Caller, hosted: Hosted, sms: Sms) -> None:
    """signDoc with a PDF whose /Pages /Kids loops back to itself: a 422 problem with a
    machine-readable reason (it was a 500 that spent the SAD); the SAD still signs."""
    document = permit_pdf("Permis n° 2026/0077")
    granted = authorize(client, platform, hosted, sms, document=document)
    assert granted["_status"] == 200, granted

    def sign(data: bytes) -> TestResponse:
        return client.post("/csc/v2/signatures/signDoc", headers=platform.headers,
                           content_type="multipart/form-data", data={
                               "credentialID": hosted.serial, "SAD": granted["SAD"],
                               "conformance_level": "AdES-B-B",
                               "document": (io.BytesIO(data), "permit.pdf")})

    cases = broken()
    for name in ("pages-kids-itself", "count-lies", "broken-xref", "encrypted", "not-a-pdf"):
        data, reason = cases[name]
        refused = sign(data)
        assert refused.status_code == 422, (name, refused.get_json())
        problem = refused.get_json()
        assert problem["type"].endswith("/pki-invalid-document"), problem
        assert problem["reason"] == reason
    signed = sign(document)
    assert signed.status_code == 200, signed.get_json()
    assert signed.headers["X-Signature-Level"] == "PAdES-B-B"
    assert sign(document).status_code == 403  # and then it is spent


def test_verify_any_pdf_and_refuse_garbage(client: FlaskClient, platform: Caller,
                                           api_runtime: Runtime) -> None:
    foreign, _ca = _foreign_pdf()
    answer = client.post("/v1/verify", headers=platform.headers,
                         content_type="multipart/form-data",
                         data={"document": (io.BytesIO(foreign), "facture.pdf")})
    assert answer.status_code == 200, answer.get_json()
    sig = answer.get_json()["signatures"][0]
    assert sig["indication"] == "INDETERMINATE"
    assert sig["sub_indication"] == "NO_CERTIFICATE_CHAIN_FOUND"
    tampered = foreign.replace(b"Facture", b"Fucture", 1)
    failed = client.post("/v1/verify", data=tampered, content_type="application/pdf",
                         headers=platform.headers).get_json()
    assert failed["signatures"][0]["indication"] == "TOTAL-FAILED"
    assert failed["signatures"][0]["sub_indication"] == "HASH_FAILURE"
    garbage = client.post("/v1/verify", data=b"%PDF-1.7 nothing", headers=platform.headers,
                          content_type="application/pdf")
    assert garbage.status_code == 422
    assert garbage.get_json()["type"].endswith("/pki-invalid-document")
    wrong_type = client.post("/v1/verify", data=b"{}", headers=platform.headers,
                             content_type="text/plain")
    assert wrong_type.status_code == 415
    no_document = client.post("/v1/verify", data=b"{}", headers=platform.headers,
                              content_type="application/json")
    assert no_document.status_code == 422
    anonymous = client.post("/v1/verify", data=foreign, content_type="application/pdf")
    assert anonymous.status_code == 401
    big = b"%PDF-1.7\n" + b"0" * (api_runtime.settings.max_upload_mb * 1024 * 1024 + 10)
    too_big = client.post("/v1/verify", data=big, content_type="application/pdf",
                          headers=platform.headers)
    assert too_big.status_code == 413


ROLE_ROWS = [
    # (path, body, roles allowed past authentication and authorisation)
    ("/csc/v2/credentials/list", {"userID": "AB123456"},
     {"dgcl_admin", "operator", "platform"}),
    ("/csc/v2/credentials/info", {"credentialID": "abc123"},
     {"dgcl_admin", "operator", "holder", "platform"}),
    ("/csc/v2/credentials/sendOTP", {"credentialID": "abc123"}, {"holder", "platform"}),
    ("/csc/v2/credentials/authorize",
     {"credentialID": "abc123", "PIN": "123456", "OTP": "123456",
      "hashes": [_b64(b"\x00" * 32)]}, {"holder", "platform"}),
    ("/csc/v2/signatures/signHash",
     {"credentialID": "abc123", "SAD": "x", "hashes": [_b64(b"\x00" * 32)]},
     {"holder", "platform"}),
    ("/csc/v2/signatures/signDoc", None, {"holder", "platform"}),
    ("/v1/verify", None, {"dgcl_admin", "operator", "contact", "holder", "platform"}),
    ("/v1/extend", None, {"operator", "platform"}),
]


def test_roles(client: FlaskClient, callers: dict[str, Caller]) -> None:
    """Who gets past authorisation (the service may then say 404, 415, 422...)."""
    wrong = []
    for path, body, allowed in ROLE_ROWS:
        for role, caller in callers.items():
            if role == "other_contact":
                continue
            headers = caller.headers if caller.token else {}
            answer = client.post(path, json=body, headers=headers) if body is not None \
                else client.post(path, headers=headers)
            status = answer.status_code
            expected_ok = role in allowed
            ok = (status == 401) if role == "anonymous" else \
                (status not in (401, 403) and status < 500) if expected_ok else status == 403
            if not ok:
                wrong.append(f"{path} as {role}: {status}")
    assert wrong == []

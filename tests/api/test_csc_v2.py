"""CSC v2.0.0.2 request and response shapes over HTTP: ``authData``, ``hashes`` and
``documentDigests`` objects at ``credentials/authorize``, ``signatures/signDoc`` as JSON
with ``documents`` (answered ``DocumentWithSignature``, judged by pdfsig) and with
``documentDigests`` (answered ``SignatureObject``: a detached CMS checked with
cryptography), and the ``{error, error_description}`` members of every refusal."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

from asn1crypto import cms
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from flask.testing import FlaskClient
from sqlalchemy import select

from api.runtime import Runtime
from pki.models import AuthorityRecord
from tests.api.conftest import Caller
from tests.api.test_csc import Hosted, Sms, hosted, platform, sms  # noqa: F401
from tests.pki.test_pades_pki import make_nss_db, pdfsig, permit_pdf

SHA256 = "2.16.840.1.101.3.4.2.1"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _authorize(client: FlaskClient, caller: Caller, owner: Hosted, phone: Sms,
               **body: object) -> dict:
    sent = client.post("/csc/v2/credentials/sendOTP", headers=caller.headers,
                       json={"credentialID": owner.serial})
    assert sent.status_code == 200, sent.get_json()
    code = phone.read(owner.mobile, r"(\d{6}) : code de signature")
    answer = client.post("/csc/v2/credentials/authorize", headers=caller.headers, json={
        "credentialID": owner.serial,
        "authData": [{"id": "PIN", "value": owner.pin}, {"id": "OTP", "value": code}],
        **body})
    found: dict = answer.get_json()
    found["_status"] = answer.status_code
    return found


def _root(rt: Runtime) -> x509.Certificate:
    with rt.unit_of_work() as session:
        root = session.scalars(select(AuthorityRecord)
                               .where(AuthorityRecord.kind == "root")).first()
        assert root is not None
        return x509.load_der_x509_certificate(root.der)


def test_auth_data_and_sign_hash(client: FlaskClient, platform: Caller,  # noqa: F811
                                 hosted: Hosted, sms: Sms) -> None:  # noqa: F811
    digests = [hashlib.sha256(f"permit {i}".encode()).digest() for i in range(3)]
    granted = _authorize(client, platform, hosted, sms, numSignatures=3,
                         hashes=[_b64(d) for d in digests], hashAlgorithmOID=SHA256)
    assert granted["_status"] == 200, granted
    assert set(granted) >= {"SAD", "expiresIn"}
    body = {"credentialID": hosted.serial, "SAD": granted["SAD"],
            "hashes": [_b64(d) for d in digests], "hashAlgorithmOID": SHA256,
            "signAlgo": "1.2.840.10045.2.1", "operationMode": "S"}
    signed = client.post("/csc/v2/signatures/signHash", headers=platform.headers, json=body)
    assert signed.status_code == 200, signed.get_json()
    assert len(signed.get_json()["signatures"]) == 3
    replay = client.post("/csc/v2/signatures/signHash", headers=platform.headers, json=body)
    problem = replay.get_json()
    assert replay.status_code == 403
    assert problem["error"] == "invalid_request" and problem["error_description"]
    assert problem["type"].endswith("/signing-sad-invalid")


def test_auth_data_refusals_name_their_error(client: FlaskClient, platform: Caller,  # noqa: F811
                                            hosted: Hosted) -> None:  # noqa: F811
    missing = client.post("/csc/v2/credentials/authorize", headers=platform.headers, json={
        "credentialID": hosted.serial, "hashes": [_b64(b"\x01" * 32)],
        "authData": [{"id": "PIN", "value": "123456"}]})
    assert missing.status_code == 422
    assert missing.get_json()["error"] == "invalid_request"
    assert "123456" not in missing.get_data(as_text=True)
    unknown = client.post("/csc/v2/credentials/authorize", headers=platform.headers, json={
        "credentialID": hosted.serial, "hashes": [_b64(b"\x01" * 32)],
        "authData": [{"id": "PIN", "value": "123456"}, {"id": "FACE", "value": "x"}]})
    assert unknown.status_code == 422 and unknown.get_json()["error"] == "invalid_request"
    anonymous = client.post("/csc/v2/credentials/list", json={"userID": hosted.cin})
    assert anonymous.status_code == 401 and anonymous.get_json()["error"] == "invalid_token"


def test_sign_doc_json_documents(client: FlaskClient, platform: Caller,  # noqa: F811
                                 hosted: Hosted, sms: Sms, api_runtime: Runtime,  # noqa: F811
                                 tmp_path: Path) -> None:
    """The SAD authorises the SHA-256 of each PDF (as ``hashes``); signDoc signs both."""
    first, second = permit_pdf("Permis n° 2026/0101"), permit_pdf("Permis n° 2026/0102")
    digests = [hashlib.sha256(d).digest() for d in (first, second)]
    granted = _authorize(client, platform, hosted, sms, numSignatures=2,
                         hashes=[_b64(d) for d in digests], hashAlgorithmOID=SHA256)
    assert granted["_status"] == 200, granted
    body = {"credentialID": hosted.serial, "SAD": granted["SAD"], "documents": [
        {"document": _b64(first), "signature_format": "P", "conformance_level": "Ades-B-B",
         "signed_envelope_property": "Revision"},
        {"document": _b64(second), "signature_format": "P", "conformance_level": "Ades-B-T"}]}
    wrong_format = client.post("/csc/v2/signatures/signDoc", headers=platform.headers,
                               json={**body, "documents": [
                                   {**body["documents"][0], "signature_format": "C"}]})
    assert wrong_format.status_code == 422
    assert wrong_format.get_json()["error"] == "invalid_request"
    signed = client.post("/csc/v2/signatures/signDoc", headers=platform.headers, json=body)
    assert signed.status_code == 200, signed.get_json()
    out = signed.get_json()["DocumentWithSignature"]
    assert len(out) == 2
    # Each stamp's QR code leads to its own public status page, named beside the document.
    pages = signed.get_json()["signatureStatus"]
    assert len(pages) == 2 and len(set(pages)) == 2
    assert all(path.startswith("/s/") for path in pages)
    assert client.get(pages[0]).status_code in (301, 302, 303, 307, 308)
    db = make_nss_db(tmp_path / "nss", _root(api_runtime))
    for pdf in out:
        (judged,) = pdfsig(base64.b64decode(pdf), db, tmp_path)
        assert judged["Signature Validation"] == "Signature is Valid."
        assert judged["Certificate Validation"] == "Certificate is Trusted."
    again = client.post("/csc/v2/signatures/signDoc", headers=platform.headers, json=body)
    assert again.status_code == 403 and again.get_json()["error"] == "invalid_request"


def test_sign_doc_json_document_digests(client: FlaskClient, platform: Caller,  # noqa: F811
                                        hosted: Hosted, sms: Sms) -> None:  # noqa: F811
    """documentDigests objects at authorize and at signDoc: a detached PAdES CMS per hash,
    whose signature verifies with the credential's key."""
    digest = hashlib.sha256(b"byte range of a prepared PDF").digest()
    objects = [{"hashes": [_b64(digest)], "hashAlgorithmOID": SHA256}]
    granted = _authorize(client, platform, hosted, sms, documentDigests=objects)
    assert granted["_status"] == 200, granted
    signed = client.post("/csc/v2/signatures/signDoc", headers=platform.headers, json={
        "credentialID": hosted.serial, "SAD": granted["SAD"], "documentDigests": [
            {**objects[0], "signature_format": "P", "conformance_level": "Ades-B-B"}]})
    assert signed.status_code == 200, signed.get_json()
    (der,) = [base64.b64decode(s) for s in signed.get_json()["SignatureObject"]]
    info = cms.ContentInfo.load(der)
    signed_data = info["content"]
    signer = signed_data["signer_infos"][0]
    attrs = {a["type"].native: a["values"][0] for a in signer["signed_attrs"]}
    assert attrs["message_digest"].native == digest
    certs = [c.chosen for c in signed_data["certificates"]]
    leaf = next(c for c in certs if format(c.serial_number, "x") == hosted.serial)
    public = x509.load_der_x509_certificate(leaf.dump()).public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    signed_attrs = signer["signed_attrs"].untag().dump()
    public.verify(signer["signature"].native, signed_attrs, ec.ECDSA(hashes.SHA256()))


def test_info_advertises_v2(client: FlaskClient) -> None:
    info = client.post("/csc/v2/info").get_json()
    assert info["specs"] == "2.0.0.2"
    assert info["conformance_levels"] == ["Ades-B-B", "Ades-B-T", "Ades-B-LT", "Ades-B-LTA"]
    assert info["signature_formats"]["formats"] == ["P"]


def test_document_digests_at_b_t_carry_our_timestamp(client: FlaskClient,
                                                     platform: Caller,  # noqa: F811
                                                     hosted: Hosted,  # noqa: F811
                                                     sms: Sms) -> None:  # noqa: F811
    digest = hashlib.sha256(b"another prepared byte range").digest()
    granted = _authorize(client, platform, hosted, sms, numSignatures=1,
                         hashes=[_b64(digest)], hashAlgorithmOID=SHA256)
    assert granted["_status"] == 200, granted
    lta = client.post("/csc/v2/signatures/signDoc", headers=platform.headers, json={
        "credentialID": hosted.serial, "SAD": granted["SAD"], "documentDigests": [
            {"hashes": [_b64(digest)], "hashAlgorithmOID": SHA256,
             "conformance_level": "Ades-B-LT"}]})
    assert lta.status_code == 422 and lta.get_json()["error"] == "invalid_request"
    signed = client.post("/csc/v2/signatures/signDoc", headers=platform.headers, json={
        "credentialID": hosted.serial, "SAD": granted["SAD"], "documentDigests": [
            {"hashes": [_b64(digest)], "hashAlgorithmOID": SHA256,
             "conformance_level": "Ades-B-T"}]})
    assert signed.status_code == 200, signed.get_json()
    (der,) = [base64.b64decode(s) for s in signed.get_json()["SignatureObject"]]
    signer = cms.ContentInfo.load(der)["content"]["signer_infos"][0]
    unsigned = {a["type"].native for a in signer["unsigned_attrs"]}
    assert "signature_time_stamp_token" in unsigned

"""CSC v1.0.4.0 (``/csc/v1``) as an outside client speaks it: pyHanko's own, unmodified
``CSCSigner`` (aiohttp) signs a PDF against Tawqi served on 127.0.0.1; poppler's pdfsig and
pyHanko's validator accept the result. The authorisation manager is the client's part
(CSC leaves it to the integrator): it asks for the SMS code (``credentials/sendOTP``),
reads it from the phone, and calls ``credentials/authorize`` with v1's ``PIN``, ``OTP``,
``hash`` and ``numSignatures`` through pyHanko's own request formatting."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest
from cryptography import x509
from flask import Flask
from flask.testing import FlaskClient
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign import signers
from pyhanko.sign.signers.csc_signer import (
    CSCAuthorizationInfo,
    CSCAuthorizationManager,
    CSCCredentialInfo,
    CSCServiceSessionInfo,
    CSCSigner,
    fetch_certs_in_csc_credential,
)
from pyhanko.sign.validation import validate_pdf_signature
from pyhanko_certvalidator import ValidationContext
from sqlalchemy import select

from api.runtime import Runtime
from pki.models import AuthorityRecord
from pki.signer import to_asn1
from tests.api.conftest import Caller
from tests.api.test_csc import Hosted, Sms, hosted, platform, sms  # noqa: F401
from tests.e2e.conftest import serve
from tests.pki.test_pades_pki import make_nss_db, pdfsig, permit_pdf

# One thread serves the app over the test's own database connection: SQLite only, as the
# browser tests.
pytestmark = [pytest.mark.hsm,
              pytest.mark.parametrize("db_engine", ["sqlite"], indirect=True)]


class SmsAuthorization(CSCAuthorizationManager):
    """Explicit authorisation: the code by SMS, then PIN + code bound to the hashes."""

    def __init__(self, session: aiohttp.ClientSession, info: CSCServiceSessionInfo,
                 credential: CSCCredentialInfo, pin: str, read_code: Callable[[], str]
                 ) -> None:
        super().__init__(info, credential)
        self.session = session
        self.pin = pin
        self.read_code = read_code

    async def authorize_signature(self, hash_b64s: list[str]) -> CSCAuthorizationInfo:
        info = self.csc_session_info
        async with self.session.post(info.endpoint_url("credentials/sendOTP"),
                                     headers=self.auth_headers,
                                     json={"credentialID": info.credential_id},
                                     raise_for_status=True) as sent:
            assert sent.status == 204
        body = self.format_csc_auth_request(pin=self.pin, otp=self.read_code(),
                                            hash_b64s=hash_b64s)
        async with self.session.post(info.endpoint_url("credentials/authorize"),
                                     headers=self.auth_headers, json=body,
                                     raise_for_status=True) as answer:
            return self.parse_csc_auth_response(await answer.json())


async def _sign_with_pyhanko(url: str, key: str, owner: Hosted, phone: Sms,
                             pdf: bytes) -> bytes:
    info = CSCServiceSessionInfo(service_url=url, credential_id=owner.serial,
                                 oauth_token=key, api_ver="v1")
    async with aiohttp.ClientSession() as session:
        credential = await fetch_certs_in_csc_credential(session, info)
        assert credential.hash_pinning_required  # SCAL 2: the SAD is bound to the hashes
        manager = SmsAuthorization(
            session, info, credential, owner.pin,
            lambda: phone.read(owner.mobile, r"(\d{6}) : code de signature"))
        signer = CSCSigner(session, manager)
        writer = IncrementalPdfFileWriter(io.BytesIO(pdf))
        out = await signers.async_sign_pdf(
            writer, signers.PdfSignatureMetadata(field_name="Signature1"), signer=signer)
        return out.getvalue()


def _root(rt: Runtime) -> x509.Certificate:
    with rt.unit_of_work() as session:
        root = session.scalars(select(AuthorityRecord)
                               .where(AuthorityRecord.kind == "root")).first()
        assert root is not None
        return x509.load_der_x509_certificate(root.der)


def test_pyhanko_csc_signer_signs_a_pdf(app: Flask, platform: Caller,  # noqa: F811
                                        hosted: Hosted, sms: Sms,  # noqa: F811
                                        api_runtime: Runtime, tmp_path: Path) -> None:
    document = permit_pdf("Permis n° 2026/0200")
    with serve(app) as url:
        signed = asyncio.run(_sign_with_pyhanko(url, platform.token, hosted, sms, document))
    root = _root(api_runtime)
    (judged,) = pdfsig(signed, make_nss_db(tmp_path / "nss", root), tmp_path)
    assert judged["Signature Validation"] == "Signature is Valid."
    assert judged["Certificate Validation"] == "Certificate is Trusted."
    embedded = PdfFileReader(io.BytesIO(signed)).embedded_regular_signatures[0]
    context = ValidationContext(trust_roots=[to_asn1(root)], allow_fetching=False,
                                revocation_mode="soft-fail",
                                moment=api_runtime.clock.now())
    status = validate_pdf_signature(embedded, signer_validation_context=context)
    assert status.bottom_line, status.pretty_print_details()
    assert format(status.signing_cert.serial_number, "x") == hosted.serial


def test_v1_names_and_refusals(client: FlaskClient, platform: Caller,  # noqa: F811
                               hosted: Hosted, sms: Sms) -> None:  # noqa: F811
    info = client.post("/csc/v1/info").get_json()
    assert info["specs"] == "1.0.4.0" and "signatures/signHash" in info["methods"]
    listed = client.post("/csc/v1/credentials/list", headers=platform.headers,
                         json={"userID": hosted.cin})
    assert listed.get_json() == {"credentialIDs": [hosted.serial]}
    described = client.post("/csc/v1/credentials/info", headers=platform.headers, json={
        "credentialID": hosted.serial, "certInfo": True, "authInfo": True}).get_json()
    assert described["authMode"] == "explicit" and described["SCAL"] == "2"
    assert described["PIN"]["presence"] == "true" and described["OTP"]["type"] == "online"
    assert len(described["cert"]["validFrom"]) == 15  # GeneralizedTime YYYYMMDDHHMMSSZ
    digest = hashlib.sha256(b"v1 permit").digest()
    sent = client.post("/csc/v1/credentials/sendOTP", headers=platform.headers,
                       json={"credentialID": hosted.serial})
    assert sent.status_code == 204
    code = sms.read(hosted.mobile, r"(\d{6}) : code de signature")
    granted = client.post("/csc/v1/credentials/authorize", headers=platform.headers, json={
        "credentialID": hosted.serial, "numSignatures": 1, "PIN": hosted.pin, "OTP": code,
        "hash": [base64.b64encode(digest).decode()]})
    assert granted.status_code == 200, granted.get_json()
    sad = granted.get_json()["SAD"]
    other = client.post("/csc/v1/signatures/signHash", headers=platform.headers, json={
        "credentialID": hosted.serial, "SAD": sad, "signAlgo": "1.2.840.10045.4.3.2",
        "hash": [base64.b64encode(b"\x05" * 32).decode()]})
    assert other.status_code == 403
    assert other.get_json()["error"] == "invalid_request"
    # misuse spent it: the right hash is refused too
    again = client.post("/csc/v1/signatures/signHash", headers=platform.headers, json={
        "credentialID": hosted.serial, "SAD": sad, "signAlgo": "1.2.840.10045.4.3.2",
        "hash": [base64.b64encode(digest).decode()]})
    assert again.status_code == 403

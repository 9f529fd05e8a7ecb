"""Remote signing in the spirit of the Cloud Signature Consortium API v2 (``/csc/v2``).

Same resource names and fields where they fit: ``info``, ``credentials/list``,
``credentials/info``, ``credentials/sendOTP``, ``credentials/authorize`` (PIN + one-time
code -> SAD), ``signatures/signHash`` (a batch of hashes) and ``signatures/signDoc`` (a PDF
in, the PAdES-signed PDF out). A credential is a hosted token's certificate; its
``credentialID`` is the certificate serial (hex). ``userID`` is the holder's CIN.

Views parse, authorise and serialise; :mod:`pki.signing.service` decides. Operations that check a
PIN or sign run outside the framework's unit of work (``transactional=False``): the service
runs its own short transactions and calls the token layer outside them. PINs and codes pass
through here on their way to the service and are never echoed or logged.

The remote-signing and PAdES services come built from the composition root
(:mod:`api.wiring`: the holder directory and the code sender over :mod:`delivery`, our TSA
in-process, our CA's records as revocation source).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from cryptography import x509
from flask import Response, request, url_for
from sqlalchemy.orm import Session

from api.errors import UnsupportedUpload
from api.policy import Scope
from api.routing import ApiBlueprint, Call
from api.schema import ValidationFailed, rule
from api.wiring.flaskapp import wiring
from core.clock import as_utc
from core.errors import InvalidInput
from delivery import holders
from delivery.errors import InvalidHolder
from delivery.validation import CIN_SCHEMA_PATTERN
from pki.signing.errors import CredentialNotFound
from pki.signing.models import PURPOSE_DOCUMENT, PURPOSE_HASH
from pki.signing.pades import (
    Level,
    PadesRequest,
    Placement,
)
from pki.signing.ports import HolderContact
from pki.signing.service import (
    HASH_OID_BY_NAME,
    HASH_OIDS,
    Credential,
    decode_hashes,
    issuer_chain,
    parse_hash_algorithm,
)

bp = ApiBlueprint("csc", __name__, url_prefix="/csc/v2", tag="Remote signing",
                  description="Cloud Signature Consortium API v2 style remote signing with "
                              "hosted keys: credentials, PIN + SMS code authorisation, "
                              "single-use SADs, batches of hashes and PAdES documents.")

CIN = CIN_SCHEMA_PATTERN
SERIAL = r"^[0-9a-fA-F]{1,64}$"
SHA256_OID = HASH_OID_BY_NAME["sha256"]
CONFORMANCE = {"AdES-B-B": Level.B_B, "AdES-B-T": Level.B_T, "AdES-B-LT": Level.B_LT,
               "AdES-B-LTA": Level.B_LTA,
               "Ades-B-B": Level.B_B, "Ades-B-T": Level.B_T, "Ades-B-LT": Level.B_LT,
               "Ades-B-LTA": Level.B_LTA,
               "B-B": Level.B_B, "B-T": Level.B_T, "B-LT": Level.B_LT, "B-LTA": Level.B_LTA}
PDF_UPLOAD = {"type": "object", "required": ["credentialID", "SAD", "document"],
              "properties": {
                  "credentialID": {"type": "string"}, "SAD": {"type": "string"},
                  "document": {"type": "string", "format": "binary"},
                  "conformance_level": {"type": "string",
                                        "enum": ["AdES-B-B", "AdES-B-T", "AdES-B-LT",
                                                 "AdES-B-LTA"]},
                  "visible": {"type": "boolean", "default": True},
                  "page": {"type": "integer", "description": "0-based; -1: last page"},
                  "box": {"type": "string", "description": "x1,y1,x2,y2 in points"},
                  "reason": {"type": "string"}, "location": {"type": "string"}}}
PDF = {"type": "string", "format": "binary"}


# --------------------------------------------------------------------------- schemas


@dataclass(frozen=True)
class InfoOut:
    specs: str
    name: str
    logo: str
    region: str
    lang: str
    description: str
    authType: list[str]
    methods: list[str]
    signAlgorithms: dict[str, list[str]]
    signature_formats: dict[str, list[str]]
    conformance_levels: list[str]
    maxHashes: int
    sadLifetimeSeconds: int


@dataclass(frozen=True)
class ListIn:
    userID: str | None = field(default=None, metadata=rule(
        pattern=CIN, description="The holder's CIN (a holder may omit it: their own)."))
    credInfo: bool = False
    certificates: Literal["none", "single", "chain"] = "single"
    certInfo: bool = False
    authInfo: bool = False
    onlyValid: bool = False
    maxResults: int | None = field(default=None, metadata=rule(minimum=1, maximum=100))
    clientData: str | None = field(default=None, metadata=rule(max_length=500))


@dataclass(frozen=True)
class InfoIn:
    credentialID: str = field(metadata=rule(pattern=SERIAL))
    certificates: Literal["none", "single", "chain"] = "single"
    certInfo: bool = False
    authInfo: bool = False
    clientData: str | None = field(default=None, metadata=rule(max_length=500))


@dataclass(frozen=True)
class KeyOut:
    status: Literal["enabled", "disabled"]
    algo: list[str]
    len: int
    curve: str | None


@dataclass(frozen=True)
class CertOut:
    status: Literal["valid", "expired", "revoked", "suspended", "not-yet-valid"]
    certificates: list[str]
    issuerDN: str | None = None
    serialNumber: str | None = None
    subjectDN: str | None = None
    validFrom: datetime | None = None
    validTo: datetime | None = None


@dataclass(frozen=True)
class AuthObjectOut:
    type: str
    id: str
    format: str
    label: str
    description: str
    generator: str | None = None


@dataclass(frozen=True)
class AuthOut:
    mode: Literal["explicit"]
    expression: str
    objects: list[AuthObjectOut]


@dataclass(frozen=True)
class CredentialInfoOut:
    credentialID: str
    description: str
    key: KeyOut
    cert: CertOut
    SCAL: str
    multisign: int
    lang: str
    auth: AuthOut | None = None


@dataclass(frozen=True)
class ListOut:
    credentialIDs: list[str]
    onlyValid: bool
    credentialInfos: list[CredentialInfoOut] | None = None


@dataclass(frozen=True)
class SendOtpIn:
    credentialID: str = field(metadata=rule(pattern=SERIAL))
    clientData: str | None = field(default=None, metadata=rule(max_length=500))


@dataclass(frozen=True)
class SendOtpOut:
    expiresAt: datetime
    phoneHint: str


@dataclass(frozen=True)
class AuthorizeIn:
    credentialID: str = field(metadata=rule(pattern=SERIAL))
    PIN: str = field(metadata=rule(min_length=4, max_length=32, write_only=True))
    OTP: str = field(metadata=rule(min_length=4, max_length=12, write_only=True))
    numSignatures: int = field(default=1, metadata=rule(minimum=1))
    hashes: list[str] | None = field(default=None, metadata=rule(
        min_items=1, description="Base64 hashes the SAD will sign (signatures/signHash)."))
    documentDigests: list[str] | None = field(default=None, metadata=rule(
        min_items=1, max_items=1,
        description="Base64 SHA-256 of the PDF file the SAD will sign (signatures/signDoc)."))
    hashAlgorithmOID: str = SHA256_OID
    description: str | None = field(default=None, metadata=rule(max_length=500))
    clientData: str | None = field(default=None, metadata=rule(max_length=500))


@dataclass(frozen=True)
class AuthorizeOut:
    SAD: str
    expiresIn: int
    authorizationID: str


@dataclass(frozen=True)
class SignHashIn:
    credentialID: str = field(metadata=rule(pattern=SERIAL))
    SAD: str = field(metadata=rule(min_length=1, max_length=200, write_only=True))
    hashes: list[str] = field(metadata=rule(min_items=1))
    hashAlgorithmOID: str = SHA256_OID
    signAlgo: str | None = None
    signAlgoParams: str | None = None
    operationMode: Literal["S"] = "S"
    clientData: str | None = field(default=None, metadata=rule(max_length=500))


@dataclass(frozen=True)
class SignHashOut:
    signatures: list[str]


# --------------------------------------------------------------------------- helpers


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _credential_scope(call: Call, session: Session, credential: Credential, *,
                      authorised: bool = False) -> HolderContact:
    remote = wiring().remote()
    contact = remote.contact(session, credential)
    call.authorize(Scope(holder_id=contact.holder_id, holder_authorised=authorised))
    return contact


def _load_credential(call: Call, credential_id: str, *, authorised: bool = False
                     ) -> tuple[Credential, HolderContact]:
    with call.runtime.unit_of_work() as session:
        credential = wiring().remote().credential(session, credential_id)
        contact = _credential_scope(call, session, credential, authorised=authorised)
        return credential, contact


def credential_info(credential: Credential, chain: tuple[x509.Certificate, ...], *,
                    at: datetime, certificates: str, cert_info: bool, auth_info: bool,
                    max_batch: int) -> CredentialInfoOut:
    from cryptography.hazmat.primitives import serialization

    certs = []
    if certificates in ("single", "chain"):
        certs.append(credential.certificate)
    if certificates == "chain":
        certs.extend(chain)
    state = credential.state_at(at)
    public = credential.certificate.public_key()
    curve = getattr(getattr(public, "curve", None), "name", None)
    cert = CertOut(
        status=state,  # type: ignore[arg-type]
        certificates=[_b64(c.public_bytes(serialization.Encoding.DER)) for c in certs],
        issuerDN=credential.certificate.issuer.rfc4514_string() if cert_info else None,
        serialNumber=credential.id if cert_info else None,
        subjectDN=credential.certificate.subject.rfc4514_string() if cert_info else None,
        validFrom=credential.not_before if cert_info else None,
        validTo=credential.not_after if cert_info else None)
    auth = AuthOut("explicit", "PIN AND OTP", [
        AuthObjectOut("Password", "PIN", "N", "PIN", "The PIN of the signing key"),
        AuthObjectOut("Password", "OTP", "N", "Code", "The code sent by SMS "
                      "(credentials/sendOTP)", generator="SMS")]) if auth_info else None
    return CredentialInfoOut(
        credentialID=credential.id,
        description=f"{credential.certificate.subject.rfc4514_string()} ({credential.key_type})",
        key=KeyOut("enabled" if state == "valid" else "disabled",
                   credential.sign_algorithms(), credential.key_length, curve),
        cert=cert, SCAL="2", multisign=max_batch, lang="fr-MA", auth=auth)


# --------------------------------------------------------------------------- operations


@bp.operation("POST", "/info", action=None, response=InfoOut,
              summary="What this signing service offers (CSC info)")
def info(call: Call) -> InfoOut:
    settings = call.settings
    return InfoOut(
        specs="2.0.0.2", name="Tawqi", logo=f"{settings.public_url.rstrip('/')}/logo.png",
        region="MA", lang="fr-MA",
        description="Signature électronique des autorisations — توقيع إلكتروني",
        authType=["external"],
        methods=["credentials/list", "credentials/info", "credentials/sendOTP",
                 "credentials/authorize", "signatures/signHash", "signatures/signDoc"],
        signAlgorithms={"algos": ["1.2.840.10045.2.1", "1.2.840.10045.4.3.2",
                                  "1.2.840.10045.4.3.3", "1.2.840.113549.1.1.1",
                                  "1.2.840.113549.1.1.11"]},
        signature_formats={"formats": ["P"], "envelope_properties": ["Certification"]},
        conformance_levels=["AdES-B-B", "AdES-B-T", "AdES-B-LT", "AdES-B-LTA"],
        maxHashes=settings.sign_hash_max_batch, sadLifetimeSeconds=settings.sad_ttl_seconds)


@bp.operation("POST", "/credentials/list", action="signing.credentials.read", body=ListIn,
              response=ListOut, summary="A holder's hosted signing credentials")
def credentials_list(call: Call, body: ListIn) -> ListOut:
    cin = body.userID
    if cin is None:
        holder_id = call.user.holder_id
        holder = holders.get_holder(call.session, holder_id) if holder_id else None
        if holder is None:
            raise ValidationFailed("userID (the holder's CIN) is required",
                                   errors=[{"field": "userID", "message": "is required"}])
        cin = holder.cin
    try:
        holder = holders.find_by_cin(call.session, cin)
    except InvalidHolder as exc:
        raise ValidationFailed("userID is not a CIN",
                               errors=[{"field": "userID", "message": exc.detail}]) from exc
    call.authorize(Scope(holder_id=holder.id if holder else -1))
    remote = wiring().remote()
    found = remote.credentials(call.session, cin, only_valid=body.onlyValid)
    if body.maxResults is not None:
        found = found[:body.maxResults]
    infos = None
    if body.credInfo:
        now = as_utc(call.clock.now())
        infos = [credential_info(c, issuer_chain(call.session, c), at=now,
                                 certificates=body.certificates, cert_info=body.certInfo,
                                 auth_info=body.authInfo, max_batch=remote.policy.max_batch)
                 for c in found]
    return ListOut([c.id for c in found], body.onlyValid, infos)


@bp.operation("POST", "/credentials/info", action="signing.credentials.read", body=InfoIn,
              response=CredentialInfoOut, summary="One credential: key, certificate, "
                                                  "authorisation mode")
def credentials_info(call: Call, body: InfoIn) -> CredentialInfoOut:
    remote = wiring().remote()
    credential = remote.credential(call.session, body.credentialID)
    _credential_scope(call, call.session, credential)
    return credential_info(credential, issuer_chain(call.session, credential),
                           at=as_utc(call.clock.now()), certificates=body.certificates,
                           cert_info=body.certInfo, auth_info=body.authInfo,
                           max_batch=remote.policy.max_batch)


def _credential_bucket(credential_id: str) -> str:
    """The rate-limit subject of a credential, however its serial is spelt."""
    return f"cred:{credential_id.strip().lower()}"


@bp.operation("POST", "/credentials/sendOTP", action="signing.authorize", body=SendOtpIn,
              response=SendOtpOut, rate_limit="otp", transactional=False,
              rate_subject=lambda args: _credential_bucket(args["body"].credentialID),
              errors=(404, 409, 503),
              summary="Send the holder a one-time code by SMS")
def send_otp(call: Call, body: SendOtpIn) -> SendOtpOut:
    _load_credential(call, body.credentialID)
    found = wiring().remote().send_otp(body.credentialID, client=call.user.key,
                                       actor=call.actor)
    return SendOtpOut(found.expires_at, found.phone_hint)


@bp.operation("POST", "/credentials/authorize", action="signing.authorize",
              body=AuthorizeIn, response=AuthorizeOut, rate_limit="pin", transactional=False,
              rate_subject=lambda args: _credential_bucket(args["body"].credentialID),
              errors=(403, 404, 409, 423, 503),
              summary="PIN + one-time code: a single-use SAD for these hashes or this PDF")
def authorize(call: Call, body: AuthorizeIn) -> AuthorizeOut:
    """Wrong PINs count towards the token's lockout; a wrong code stops before the PIN."""
    _load_credential(call, body.credentialID)
    remote = wiring().remote()
    if (body.hashes is None) == (body.documentDigests is None):
        raise InvalidInput("give either hashes (signHash) or documentDigests (signDoc)")
    if body.documentDigests is not None:
        purpose, name, size = PURPOSE_DOCUMENT, "sha256", 32
        if body.hashAlgorithmOID != SHA256_OID:
            raise InvalidInput("documentDigests are SHA-256")
        values = body.documentDigests
    else:
        purpose = PURPOSE_HASH
        name, size = parse_hash_algorithm(body.hashAlgorithmOID)
        values = body.hashes or []
    digests = decode_hashes(values, size, limit=remote.policy.max_batch)
    found = remote.authorize(body.credentialID, pin=body.PIN, otp=body.OTP, digests=digests,
                             hash_algorithm=name, purpose=purpose, client=call.user.key,
                             actor=call.actor, num_signatures=body.numSignatures,
                             description=body.description or "")
    expires = found.expires_at or call.clock.now()
    return AuthorizeOut(found.sad, max(0, int((expires - call.clock.now()).total_seconds())),
                        found.authorization_id)


@bp.operation("POST", "/signatures/signHash", action="signing.sign", body=SignHashIn,
              response=SignHashOut, transactional=False, errors=(403, 404, 409, 503),
              summary="Sign a batch of hashes with a SAD (single use)")
def sign_hash(call: Call, body: SignHashIn) -> SignHashOut:
    _load_credential(call, body.credentialID, authorised=True)
    remote = wiring().remote()
    name, size = parse_hash_algorithm(body.hashAlgorithmOID)
    digests = decode_hashes(body.hashes, size, limit=remote.policy.max_batch)
    signatures = remote.sign_hashes(body.credentialID, sad=body.SAD, digests=digests,
                                    hash_algorithm=name, sign_algorithm=body.signAlgo,
                                    client=call.user.key, actor=call.actor)
    return SignHashOut([_b64(s) for s in signatures])


def _form_bool(name: str, default: bool) -> bool:
    value = request.form.get(name)
    if value is None or value == "":
        return default
    if value.lower() in {"true", "1", "yes"}:
        return True
    if value.lower() in {"false", "0", "no"}:
        return False
    raise InvalidInput(f"{name} must be true or false", field=name)


def _placement() -> Placement:
    page_text = request.form.get("page", "-1") or "-1"
    box_text = request.form.get("box", "") or ""
    try:
        page = int(page_text)
        box = tuple(float(v) for v in box_text.split(",")) if box_text else None
    except ValueError as exc:
        raise InvalidInput("page is an integer and box four numbers x1,y1,x2,y2") from exc
    return Placement(page=page, box=box)  # type: ignore[arg-type]


@bp.operation("POST", "/signatures/signDoc", action="signing.sign", transactional=False,
              consumes={"multipart/form-data": PDF_UPLOAD},
              produces={"application/pdf": PDF}, errors=(403, 404, 409, 413, 415, 422, 503),
              summary="Sign a PDF (PAdES B-B to B-LTA, visible bilingual stamp)")
def sign_doc(call: Call) -> Response:
    """Multipart form: ``document`` (the PDF), ``credentialID``, ``SAD`` (authorised with
    the file's SHA-256 in ``documentDigests``), ``conformance_level`` (default
    ``TAWQI_PADES_DEFAULT_LEVEL``), ``visible``, ``page``, ``box``, ``reason``,
    ``location``. Answers the signed PDF; with a visible stamp, ``X-Signature-Status`` is
    the path of the signature's public status page (the stamp's QR code)."""
    if request.mimetype != "multipart/form-data":
        raise UnsupportedUpload("send a multipart/form-data body with the PDF in 'document'")
    upload = request.files.get("document")
    credential_id = request.form.get("credentialID", "")
    sad = request.form.get("SAD", "")
    if upload is None or not credential_id or not sad:
        raise InvalidInput("document, credentialID and SAD are required")
    level_text = request.form.get("conformance_level") or call.settings.pades_default_level
    level = CONFORMANCE.get(level_text)
    if level is None:
        raise InvalidInput("conformance_level must be AdES-B-B, AdES-B-T, AdES-B-LT or "
                           "AdES-B-LTA",
                           field="conformance_level")
    document = upload.read()
    _credential, contact = _load_credential(call, credential_id, authorised=True)
    stamp = contact.stamp(call.clock.now()) if _form_bool("visible", True) else None
    pades_request = PadesRequest(level=level, stamp=stamp, placement=_placement(),
                                 reason=request.form.get("reason") or None,
                                 location=request.form.get("location") or None)
    signed = wiring().remote().sign_document(
        credential_id, sad=sad, document=document, request=pades_request,
        pades=wiring().pades(), client=call.user.key, actor=call.actor,
        document_name=upload.filename or None)
    headers = {
        "Content-Disposition": 'attachment; filename="signed.pdf"',
        "X-Signature-Level": f"PAdES-{signed.level.value}",
        "X-Signature-Field": signed.field_name, "X-Document-SHA256": signed.sha256}
    if signed.public_id is not None:  # the stamp's QR code leads to this page
        headers["X-Signature-Status"] = url_for("link.status_link",
                                                public_id=signed.public_id)
    return Response(signed.data, status=200, mimetype="application/pdf", headers=headers)


__all__ = ["HASH_OIDS", "CredentialNotFound", "UnsupportedUpload", "bp"]

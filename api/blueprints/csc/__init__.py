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
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from flask import Response, request, url_for

from api.csc_common import (
    CIN,
    SERIAL,
    SHA256_OID,
    CredentialInfoOut,
    b64,
    credential_bucket,
    credential_info,
    credential_scope,
    find_credentials,
    grant,
    load_credential,
    sign_hashes,
)
from api.errors import MalformedRequest, UnsupportedUpload
from api.routing import MAX_JSON_DEPTH, ApiBlueprint, Call, json_depth
from api.schema import ValidationFailed, dump, load, rule
from api.wiring.flaskapp import wiring
from core.clock import as_utc
from core.errors import InvalidInput
from pki.signing.errors import DocumentTooLarge, SigningUnavailable
from pki.signing.models import PURPOSE_DOCUMENT, PURPOSE_HASH
from pki.signing.pades import (
    Level,
    PadesRequest,
    Placement,
    SignedPdf,
)
from pki.signing.service import (
    decode_hashes,
    issuer_chain,
    parse_hash_algorithm,
)

bp = ApiBlueprint("csc", __name__, url_prefix="/csc/v2", tag="Remote signing",
                  description="Cloud Signature Consortium API v2 style remote signing with "
                              "hosted keys: credentials, PIN + SMS code authorisation, "
                              "single-use SADs, batches of hashes and PAdES documents.")

CONFORMANCE = {"AdES-B-B": Level.B_B, "AdES-B-T": Level.B_T, "AdES-B-LT": Level.B_LT,
               "AdES-B-LTA": Level.B_LTA,
               "Ades-B-B": Level.B_B, "Ades-B-T": Level.B_T, "Ades-B-LT": Level.B_LT,
               "Ades-B-LTA": Level.B_LTA,
               "B-B": Level.B_B, "B-T": Level.B_T, "B-LT": Level.B_LT, "B-LTA": Level.B_LTA}
CONFORMANCE_LEVELS = ["Ades-B-B", "Ades-B-T", "Ades-B-LT", "Ades-B-LTA"]
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
_DOC_ITEM = {"type": "object", "required": ["document", "signature_format"], "properties": {
    "document": {"type": "string", "contentEncoding": "base64"},
    "signature_format": {"type": "string", "enum": ["P"]},
    "conformance_level": {"type": "string", "enum": CONFORMANCE_LEVELS},
    "signed_envelope_property": {"type": "string", "enum": ["Default", "Revision"]}}}
_DIGEST_ITEM = {"type": "object", "required": ["hashes", "hashAlgorithmOID"], "properties": {
    "hashes": {"type": "array", "items": {"type": "string"}, "minItems": 1},
    "hashAlgorithmOID": {"type": "string"},
    "signature_format": {"type": "string", "enum": ["P"]},
    "conformance_level": {"type": "string", "enum": ["Ades-B-B", "Ades-B-T"]}}}
SIGN_DOC_JSON = {"type": "object", "required": ["SAD", "credentialID"], "properties": {
    "credentialID": {"type": "string"}, "SAD": {"type": "string"},
    "documents": {"type": "array", "items": _DOC_ITEM, "minItems": 1},
    "documentDigests": {"type": "array", "items": _DIGEST_ITEM, "minItems": 1},
    "operationMode": {"type": "string", "enum": ["S"]},
    "clientData": {"type": "string", "maxLength": 500}}}
SIGN_DOC_OUT = {"type": "object", "properties": {
    "DocumentWithSignature": {"type": "array", "items": {"type": "string"}},
    "SignatureObject": {"type": "array", "items": {"type": "string"}},
    "signatureStatus": {"type": "array", "items": {"type": ["string", "null"]},
                        "description": "Tawqi's addition: per document, the path of the "
                                       "signature's public status page (the stamp's QR "
                                       "code), or null without a stamp."}}}


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
    oauth2: str
    methods: list[str]
    signAlgorithms: dict[str, list[str]]
    signature_formats: dict[str, list[Any]]
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
class AuthDataIn:
    """One authentication object of CSC v2 ``authData``: ``{"id": "PIN", "value": …}``."""

    id: str = field(metadata=rule(min_length=1, max_length=32))
    value: str = field(metadata=rule(min_length=1, max_length=64, write_only=True))


@dataclass(frozen=True)
class AuthorizeIn:
    credentialID: str = field(metadata=rule(pattern=SERIAL))
    numSignatures: int | None = field(default=None, metadata=rule(
        minimum=1, description="How many signatures (default: the number of hashes)."))
    hashes: list[str] | None = field(default=None, metadata=rule(
        min_items=1, description="Base64 hashes the SAD will sign: with signatures/signHash, "
                                 "or with signatures/signDoc (the SHA-256 of each PDF in "
                                 "documents, or the documentDigests' hashes)."))
    hashAlgorithmOID: str | None = field(default=None, metadata=rule(
        description="The hashes' algorithm (default SHA-256)."))
    authData: list[AuthDataIn] | None = field(default=None, metadata=rule(
        min_items=1, max_items=4, description='CSC v2: [{"id": "PIN", "value": …}, '
                                              '{"id": "OTP", "value": …}]'))
    PIN: str | None = field(default=None, metadata=rule(
        min_length=4, max_length=32, write_only=True,
        description="The PIN as a top-level field (CSC v1 style; prefer authData)."))
    OTP: str | None = field(default=None, metadata=rule(
        min_length=4, max_length=12, write_only=True,
        description="The code as a top-level field (CSC v1 style; prefer authData)."))
    documentDigests: list[Any] | None = field(default=None, metadata=rule(
        min_items=1, max_items=100,
        description="Tawqi's earlier form: base64 SHA-256 of each PDF (strings), or "
                    "objects {hashes, hashAlgorithmOID} as signDoc's documentDigests."))
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
    validity_period: int | None = None
    response_uri: str | None = field(default=None, metadata=rule(max_length=500))
    clientData: str | None = field(default=None, metadata=rule(max_length=500))


@dataclass(frozen=True)
class SignHashOut:
    signatures: list[str]


@dataclass(frozen=True)
class DocumentIn:
    """One PDF of CSC v2 ``signDoc`` ``documents``."""

    document: str = field(metadata=rule(min_length=1, description="The PDF, base64."))
    signature_format: Literal["P"] = field(metadata=rule(description="P: PAdES"))
    conformance_level: str | None = field(default=None, metadata=rule(
        description="Ades-B-B, Ades-B-T, Ades-B-LT or Ades-B-LTA (also AdES-…, B-…); default "
                    "TAWQI_PADES_DEFAULT_LEVEL."))
    signAlgo: str | None = None
    signAlgoParams: str | None = None
    signed_props: list[Any] | None = field(default=None, metadata=rule(max_items=0))
    signed_envelope_property: Literal["Default", "Revision"] = "Default"


@dataclass(frozen=True)
class DocumentDigestIn:
    """Hashes of PDFs the client prepared itself (CSC v2 ``signDoc`` ``documentDigests``):
    the answer is a detached PAdES CMS signature per hash."""

    hashes: list[str] = field(metadata=rule(min_items=1))
    hashAlgorithmOID: str = field(metadata=rule(description="SHA-256, SHA-384 or SHA-512"))
    signature_format: Literal["P"] = "P"
    conformance_level: str | None = None
    signAlgo: str | None = None
    signAlgoParams: str | None = None
    signed_props: list[Any] | None = field(default=None, metadata=rule(max_items=0))
    signed_envelope_property: Literal["Default", "Revision"] = "Default"


@dataclass(frozen=True)
class SignDocIn:
    SAD: str = field(metadata=rule(min_length=1, max_length=200, write_only=True))
    credentialID: str | None = field(default=None, metadata=rule(pattern=SERIAL))
    signatureQualifier: str | None = field(default=None, metadata=rule(max_length=100))
    documents: list[DocumentIn] | None = field(default=None, metadata=rule(min_items=1))
    documentDigests: list[DocumentDigestIn] | None = field(default=None, metadata=rule(
        min_items=1))
    operationMode: Literal["S"] = "S"
    validity_period: int | None = None
    response_uri: str | None = field(default=None, metadata=rule(max_length=500))
    clientData: str | None = field(default=None, metadata=rule(max_length=500))
    returnValidationInfo: bool = False


@dataclass(frozen=True)
class SignDocOut:
    DocumentWithSignature: list[str] | None = None
    SignatureObject: list[str] | None = None
    #: Tawqi's addition: per document, the path of its signature's public status page.
    signatureStatus: list[str | None] | None = None


# --------------------------------------------------------------------------- helpers


def _status_path(signed: SignedPdf) -> str | None:
    """The public status page the stamp's QR code leads to (None: no stamp, no record)."""
    if signed.public_id is None:
        return None
    return url_for("link.status_link", public_id=signed.public_id)


# --------------------------------------------------------------------------- operations


@bp.operation("POST", "/info", action=None, response=InfoOut,
              summary="What this signing service offers (CSC info)")
def info(call: Call) -> InfoOut:
    settings = call.settings
    return InfoOut(
        specs="2.0.0.2", name="Tawqi", logo=f"{settings.public_url.rstrip('/')}/logo.png",
        region="MA", lang="fr-MA",
        description="Signature électronique des autorisations — توقيع إلكتروني",
        authType=["external", "oauth2code"],
        oauth2=settings.public_url.rstrip("/"),
        methods=["credentials/list", "credentials/info", "credentials/sendOTP",
                 "credentials/authorize", "signatures/signHash", "signatures/signDoc"],
        signAlgorithms={"algos": ["1.2.840.10045.2.1", "1.2.840.10045.4.3.2",
                                  "1.2.840.10045.4.3.3", "1.2.840.113549.1.1.1",
                                  "1.2.840.113549.1.1.11"]},
        signature_formats={"formats": ["P"], "envelope_properties": [["Revision"]]},
        conformance_levels=CONFORMANCE_LEVELS,
        maxHashes=settings.sign_hash_max_batch, sadLifetimeSeconds=settings.sad_ttl_seconds)


@bp.operation("POST", "/credentials/list", action="signing.credentials.read", body=ListIn,
              response=ListOut, summary="A holder's hosted signing credentials")
def credentials_list(call: Call, body: ListIn) -> ListOut:
    remote = wiring().remote()
    found = find_credentials(call, body.userID, only_valid=body.onlyValid)
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
    credential_scope(call, call.session, credential)
    return credential_info(credential, issuer_chain(call.session, credential),
                           at=as_utc(call.clock.now()), certificates=body.certificates,
                           cert_info=body.certInfo, auth_info=body.authInfo,
                           max_batch=remote.policy.max_batch)


@bp.operation("POST", "/credentials/sendOTP", action="signing.authorize", body=SendOtpIn,
              response=SendOtpOut, rate_limit="otp", transactional=False,
              rate_subject=lambda args: credential_bucket(args["body"].credentialID),
              errors=(404, 409, 503),
              summary="Send the holder a one-time code by SMS")
def send_otp(call: Call, body: SendOtpIn) -> SendOtpOut:
    load_credential(call, body.credentialID)
    found = wiring().remote().send_otp(body.credentialID, client=call.user.key,
                                       actor=call.actor)
    return SendOtpOut(found.expires_at, found.phone_hint)


def pin_and_code(body: AuthorizeIn) -> tuple[str, str]:
    """The PIN and the code, from ``authData`` (v2) or the top-level ``PIN``/``OTP``."""
    found: dict[str, str] = {}
    for item in body.authData or []:
        key = item.id.upper()
        if key not in ("PIN", "OTP") or key in found:
            raise ValidationFailed("authData holds one PIN and one OTP", errors=[
                {"field": "authData", "message": f"unexpected or repeated id {item.id!r}"}])
        found[key] = item.value
    for key, value in (("PIN", body.PIN), ("OTP", body.OTP)):
        if value is not None:
            if key in found:
                raise ValidationFailed(f"give {key} once (authData or the {key} field)",
                                       errors=[{"field": key, "message": "given twice"}])
            found[key] = value
    missing = [k for k in ("PIN", "OTP") if k not in found]
    if missing:
        raise ValidationFailed("the PIN and the one-time code are required (authData)",
                               errors=[{"field": "authData", "message": f"{k} is missing"}
                                       for k in missing])
    return found["PIN"], found["OTP"]


def _digest_objects(values: list[Any]) -> tuple[list[str], str, str]:
    """``documentDigests`` of authorize: strings (SHA-256 of PDFs, Tawqi's earlier form) or
    v2 objects ``{hashes, hashAlgorithmOID}`` (one algorithm for all). Returns the hashes,
    their algorithm OID and the purpose."""
    if all(isinstance(v, str) for v in values):
        return list(values), SHA256_OID, PURPOSE_DOCUMENT
    hashes_: list[str] = []
    oids: set[str] = set()
    for index, value in enumerate(values):
        if not isinstance(value, dict):
            raise ValidationFailed("documentDigests are all strings or all objects", errors=[
                {"field": f"documentDigests[{index}]", "message": "is not an object"}])
        item = load(DocumentDigestIn, value, where=f"documentDigests[{index}]")
        hashes_.extend(item.hashes)
        oids.add(item.hashAlgorithmOID)
    if len(oids) != 1:
        raise InvalidInput("one hashAlgorithmOID for all documentDigests",
                           field="documentDigests")
    return hashes_, oids.pop(), PURPOSE_HASH


@bp.operation("POST", "/credentials/authorize", action="signing.authorize",
              body=AuthorizeIn, response=AuthorizeOut, rate_limit="pin", transactional=False,
              rate_subject=lambda args: credential_bucket(args["body"].credentialID),
              errors=(403, 404, 409, 423, 503),
              summary="PIN + one-time code: a single-use SAD for these hashes or this PDF")
def authorize(call: Call, body: AuthorizeIn) -> AuthorizeOut:
    """CSC v2: ``authData`` with the PIN and the code (``credentials/sendOTP``),
    ``hashes`` + ``hashAlgorithmOID`` + ``numSignatures``. Wrong PINs count towards the
    token's lockout; a wrong code stops before the PIN."""
    pin, otp = pin_and_code(body)
    if (body.hashes is None) == (body.documentDigests is None):
        raise InvalidInput("give either hashes or documentDigests")
    if body.documentDigests is not None:
        values, oid, purpose = _digest_objects(body.documentDigests)
        if body.hashAlgorithmOID not in (None, oid):
            raise InvalidInput("hashAlgorithmOID differs from the documentDigests'")
    else:
        values, oid, purpose = body.hashes or [], body.hashAlgorithmOID or SHA256_OID, \
            PURPOSE_HASH
    sad, expires_in, authorization = grant(
        call, credential_id=body.credentialID, pin=pin, otp=otp, hashes_=values,
        hash_oid=oid, purpose=purpose, num_signatures=body.numSignatures,
        description=body.description)
    return AuthorizeOut(sad, expires_in, authorization)


@bp.operation("POST", "/signatures/signHash", action="signing.sign", body=SignHashIn,
              response=SignHashOut, transactional=False, errors=(403, 404, 409, 503),
              summary="Sign a batch of hashes with a SAD (single use)")
def sign_hash(call: Call, body: SignHashIn) -> SignHashOut:
    if body.signAlgoParams:
        raise InvalidInput("signAlgoParams: only ECDSA and RSA PKCS#1 v1.5 are offered",
                           field="signAlgoParams")
    return SignHashOut(sign_hashes(call, credential_id=body.credentialID, sad=body.SAD,
                                   hashes_=body.hashes, hash_oid=body.hashAlgorithmOID,
                                   sign_algo=body.signAlgo))


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


def _level(text: str | None, default: str) -> Level:
    level = CONFORMANCE.get(text or default)
    if level is None:
        raise InvalidInput("conformance_level must be Ades-B-B, Ades-B-T, Ades-B-LT or "
                           "Ades-B-LTA",
                           field="conformance_level", allowed=CONFORMANCE_LEVELS)
    return level


def _read_sign_doc(call: Call) -> SignDocIn:
    """The JSON body of v2 ``signDoc``, PDFs in base64: read up to the upload limit (a
    third more than the largest PDF, for base64), then checked like any body."""
    limit = call.settings.max_upload_mb * 1024 * 1024
    request.max_content_length = limit * 4 // 3 + 64 * 1024
    raw = request.get_data(cache=True)
    try:
        value = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise MalformedRequest("the body is not valid UTF-8 JSON") from exc
    if json_depth(value) > MAX_JSON_DEPTH:
        raise MalformedRequest("the JSON body is nested too deep")
    return load(SignDocIn, value)


def _pdf(value: str, index: int, limit: int) -> bytes:
    try:
        data = base64.b64decode(value, validate=True)
    except (ValueError, TypeError) as exc:
        raise InvalidInput(f"documents[{index}].document is not base64",
                           field=f"documents[{index}].document") from exc
    if len(data) > limit:
        raise DocumentTooLarge(f"documents[{index}] is larger than {limit} bytes",
                               limit=limit, index=index)
    return data


def _sign_doc_json(call: Call) -> Response:
    body = _read_sign_doc(call)
    if body.credentialID is None:
        raise ValidationFailed("credentialID is required", errors=[
            {"field": "credentialID", "message": "is required"}])
    if (body.documents is None) == (body.documentDigests is None):
        raise InvalidInput("give either documents or documentDigests")
    credential_id = body.credentialID
    known = load_credential(call, credential_id, authorised=True)
    contact = known[1]
    remote = wiring().remote()
    default = call.settings.pades_default_level
    if body.documents is not None:
        limit = call.settings.max_upload_mb * 1024 * 1024
        documents = []
        for index, item in enumerate(body.documents):
            if item.signAlgoParams:
                raise InvalidInput("signAlgoParams is not offered", field="signAlgoParams")
            stamp = contact.stamp(call.clock.now())
            documents.append((_pdf(item.document, index, limit),
                              PadesRequest(level=_level(item.conformance_level, default),
                                           stamp=stamp)))
        signed = remote.sign_documents(credential_id, sad=body.SAD, documents=documents,
                                       pades=wiring().pades(), client=call.user.key,
                                       actor=call.actor, known=known)
        out = SignDocOut(DocumentWithSignature=[b64(s.data) for s in signed],
                         signatureStatus=[_status_path(s) for s in signed])
    else:
        digests: list[bytes] = []
        names: set[str] = set()
        levels: set[Level] = set()
        for digest_item in body.documentDigests or []:
            name, size = parse_hash_algorithm(digest_item.hashAlgorithmOID)
            names.add(name)
            levels.add(_level(digest_item.conformance_level, "Ades-B-B"))
            digests.extend(decode_hashes(digest_item.hashes, size,
                                         limit=remote.policy.max_batch))
        if len(names) != 1 or len(levels) != 1:
            raise InvalidInput("one hashAlgorithmOID and one conformance_level for all "
                               "documentDigests", field="documentDigests")
        level = levels.pop()
        if level is Level.B_LT:
            raise InvalidInput("documentDigests are signed at Ades-B-B or Ades-B-T: the "
                               "client adds the validation data to its PDF",
                               field="conformance_level")
        timestamper = wiring().pades().timestamper if level is Level.B_T else None
        if level is Level.B_T and timestamper is None:
            raise SigningUnavailable("the time-stamping authority is not loaded")
        signatures = remote.sign_digests_cms(
            credential_id, sad=body.SAD, digests=digests, hash_algorithm=names.pop(),
            timestamper=timestamper, client=call.user.key, actor=call.actor, known=known)
        out = SignDocOut(SignatureObject=[b64(s) for s in signatures])
    return Response(json.dumps(dump(out)), status=200, mimetype="application/json")


@bp.operation("POST", "/signatures/signDoc", action="signing.sign", transactional=False,
              consumes={"application/json": SIGN_DOC_JSON,
                        "multipart/form-data": PDF_UPLOAD},
              produces={"application/json": SIGN_DOC_OUT, "application/pdf": PDF},
              errors=(403, 404, 409, 413, 415, 422, 503),
              summary="Sign PDFs (PAdES B-B to B-LTA, visible bilingual stamp)")
def sign_doc(call: Call) -> Response:
    """CSC v2 JSON: ``documents`` (base64 PDFs, ``signature_format`` ``P``,
    ``conformance_level``, ``signed_envelope_property`` ``Revision``/``Default``) answered
    with ``DocumentWithSignature``, or ``documentDigests`` (``{hashes, hashAlgorithmOID}``)
    answered with ``SignatureObject`` (detached PAdES CMS, B-B or B-T). The SAD was
    authorised for the SHA-256 of each PDF, or for the digests.

    A convenience besides: a multipart form with ``document`` (the PDF), ``credentialID``,
    ``SAD``, ``conformance_level`` (default ``TAWQI_PADES_DEFAULT_LEVEL``), ``visible``,
    ``page``, ``box``, ``reason``, ``location``, answered with the signed PDF itself; with a
    visible stamp, ``X-Signature-Status`` is the path of the signature's public status page
    (the stamp's QR code)."""
    if request.mimetype == "application/json":
        return _sign_doc_json(call)
    if request.mimetype != "multipart/form-data":
        raise UnsupportedUpload("send JSON (CSC v2) or a multipart/form-data body with the "
                                "PDF in 'document'")
    upload = request.files.get("document")
    credential_id = request.form.get("credentialID", "")
    sad = request.form.get("SAD", "")
    if upload is None or not credential_id or not sad:
        raise InvalidInput("document, credentialID and SAD are required")
    level = _level(request.form.get("conformance_level"), call.settings.pades_default_level)
    document = upload.read()
    known = load_credential(call, credential_id, authorised=True)
    stamp = known[1].stamp(call.clock.now()) if _form_bool("visible", True) else None
    pades_request = PadesRequest(level=level, stamp=stamp, placement=_placement(),
                                 reason=request.form.get("reason") or None,
                                 location=request.form.get("location") or None)
    signed = wiring().remote().sign_document(
        credential_id, sad=sad, document=document, request=pades_request,
        pades=wiring().pades(), client=call.user.key, actor=call.actor,
        document_name=upload.filename or None, known=known)
    headers = {
        "Content-Disposition": 'attachment; filename="signed.pdf"',
        "X-Signature-Level": f"PAdES-{signed.level.value}",
        "X-Signature-Field": signed.field_name, "X-Document-SHA256": signed.sha256}
    status = _status_path(signed)
    if status is not None:  # the stamp's QR code leads to this page
        headers["X-Signature-Status"] = status
    return Response(signed.data, status=200, mimetype="application/pdf", headers=headers)


__all__ = ["bp"]

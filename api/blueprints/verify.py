"""Verification of signed PDFs: ``POST /v1/verify``; archive time-stamps: ``POST /v1/extend``.

Any PDF, ours or not: the body is the PDF itself (``application/pdf``), a multipart form
with the PDF in ``document`` and CRLs or OCSP responses in any number of ``revocation``
files, or JSON with the same fields in base64. The answer is one report per signature (see
:mod:`pki.signing.verification`): signer, claimed and time-stamp times, coverage, integrity, the
certificate's status at signing time and now, and the ETSI indication with its
sub-indication; ``signed`` says whether the file holds any signature. A file that is not a
readable PDF gets a 422 (a signature that cannot be read is a FORMAT_FAILURE in the report,
not a 422), an oversized one a 413, with or without a Content-Length.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from flask import Response, request

from api.errors import UnsupportedUpload
from api.routing import ApiBlueprint, Call
from api.wiring.flaskapp import wiring
from core.errors import InvalidInput
from pki.signing import verification
from pki.signing.pades import RevocationData
from pki.signing.revinfo import parse_uploaded

bp = ApiBlueprint("verify", __name__, url_prefix="/v1", tag="Verification",
                  description="Verification reports of signed PDFs, with ETSI indications.")

PDF = {"type": "string", "format": "binary"}
MAX_REVOCATION_FILES = 20
UPLOAD = {"type": "object", "required": ["document"],
          "properties": {"document": {"type": "string", "format": "binary"},
                         "revocation": {"type": "array", "maxItems": MAX_REVOCATION_FILES,
                                        "items": {"type": "string", "format": "binary"},
                                        "description": "CRLs (DER or PEM) and OCSP "
                                        "responses (DER) to validate with"}}}
JSON_UPLOAD = {"type": "object", "required": ["document"], "additionalProperties": False,
               "properties": {"document": {"type": "string", "format": "byte"},
                              "revocation": {"type": "array",
                                             "maxItems": MAX_REVOCATION_FILES,
                                             "items": {"type": "string", "format": "byte"}}}}
Indication = Literal["TOTAL-PASSED", "INDETERMINATE", "TOTAL-FAILED"]
CertStatus = Literal["good", "revoked", "suspended", "expired", "not-yet-valid", "unknown",
                     "untrusted"]


@dataclass(frozen=True)
class SignatureOut:
    field_name: str
    signer: verification.SignerIdentity
    level: str
    claimed_signing_time: datetime | None
    timestamp_time: datetime | None
    timestamp_authority: str | None
    coverage: verification.Coverage
    integrity: bool
    digest_algorithm: str | None
    signature_algorithm: str | None
    certificate_at_signing: verification.CertificateStatus
    certificate_now: verification.CertificateStatus
    indication: Indication
    sub_indication: str | None
    indication_uri: str
    sub_indication_uri: str | None
    reasons: list[str]


@dataclass(frozen=True)
class ReportOut:
    sha256: str
    size: int
    validated_at: datetime
    signed: bool
    signature_count: int
    indication: Indication | None
    signatures: list[SignatureOut]


def report_out(report: verification.VerificationReport) -> ReportOut:
    """The report as the API answers it: the domain's signer, coverage and certificate
    statuses as they are (one definition, :mod:`pki.signing.verification`), plus the ETSI
    URIs of the indications."""
    signatures = [SignatureOut(
        field_name=sig.field_name, signer=sig.signer, level=sig.level,
        claimed_signing_time=sig.claimed_signing_time, timestamp_time=sig.timestamp_time,
        timestamp_authority=sig.timestamp_authority, coverage=sig.coverage,
        integrity=sig.integrity, digest_algorithm=sig.digest_algorithm,
        signature_algorithm=sig.signature_algorithm,
        certificate_at_signing=sig.certificate_at_signing,
        certificate_now=sig.certificate_now, indication=sig.indication,
        sub_indication=sig.sub_indication, indication_uri=sig.indication_uri,
        sub_indication_uri=sig.sub_indication_uri, reasons=list(sig.reasons))
        for sig in report.signatures]
    return ReportOut(report.sha256, report.size, report.validated_at, report.signed,
                     len(signatures), report.indication, signatures)


def _base64(value: Any, name: str) -> bytes:
    if not isinstance(value, str):
        raise InvalidInput(f"'{name}' must be a base64 string", field=name)
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInput(f"'{name}' is not valid base64", field=name) from exc


def _from_json(max_upload_mb: int) -> tuple[bytes, RevocationData]:
    # The PDF's own limit, plus what base64 adds.
    request.max_content_length = max_upload_mb * 1024 * 1024 * 4 // 3 + 64 * 1024
    try:
        body = json.loads(request.get_data(cache=False))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise InvalidInput("the body is not valid JSON") from exc
    if not isinstance(body, dict) or "document" not in body:
        raise InvalidInput("put the PDF in 'document' (base64)", field="document")
    unknown = sorted(set(body) - {"document", "revocation"})
    if unknown:
        raise InvalidInput(f"unknown field {unknown[0]!r}", field=unknown[0])
    items = body.get("revocation", [])
    if not isinstance(items, list):
        raise InvalidInput("'revocation' must be a list of base64 strings", field="revocation")
    files = [(f"revocation[{i}]", _base64(item, f"revocation[{i}]"))
             for i, item in enumerate(items[:MAX_REVOCATION_FILES + 1])]
    return (_base64(body["document"], "document"),
            parse_uploaded(files, max_files=MAX_REVOCATION_FILES))


def _upload(max_upload_mb: int) -> tuple[bytes, RevocationData]:
    """The PDF and the revocation data sent with it."""
    if request.mimetype == "application/pdf":
        return request.get_data(cache=False), RevocationData()
    if request.mimetype == "multipart/form-data":
        upload = request.files.get("document")
        if upload is None:
            raise InvalidInput("put the PDF in the 'document' field", field="document")
        files = [(item.filename or "revocation", item.read())
                 for item in request.files.getlist("revocation")[:MAX_REVOCATION_FILES + 1]]
        return upload.read(), parse_uploaded(files, max_files=MAX_REVOCATION_FILES)
    if request.mimetype == "application/json":
        return _from_json(max_upload_mb)
    raise UnsupportedUpload("send the PDF as application/pdf, multipart/form-data or "
                            "application/json")


@bp.operation("POST", "/verify", action="signing.verify", response=ReportOut,
              transactional=False, consumes={"application/pdf": PDF,
                                             "multipart/form-data": UPLOAD,
                                             "application/json": JSON_UPLOAD},
              errors=(413, 415, 422), summary="Verify the signatures of a PDF")
def verify(call: Call) -> ReportOut:
    """Every signature of the file is validated (ETSI EN 319 102-1 with pyHanko) against
    our root (and ``TAWQI_VERIFY_TRUST_ANCHORS``), with the file's own validation data, our
    CA's current revocation data, the CRLs and OCSP responses of
    ``TAWQI_VERIFY_REVOCATION_DIR`` and those sent with the file (they count only when
    signed by a CA of the chain), and, when ``TAWQI_VERIFY_FETCH_REVOCATION`` allows it, what
    the certificates' CRL and OCSP addresses give."""
    data, revocation = _upload(call.settings.max_upload_mb)
    return report_out(wiring().verifier().verify(data, revocation=revocation))


@bp.operation("POST", "/extend", action="signing.extend", transactional=False,
              consumes={"application/pdf": PDF, "multipart/form-data": UPLOAD},
              produces={"application/pdf": PDF}, errors=(413, 415, 422, 503),
              summary="Add an archive time-stamp to a signed PDF (PAdES B-LTA)")
def extend(call: Call) -> Response:
    """Takes a signed PDF (any PAdES level) to B-LTA, or adds a fresh archive time-stamp
    to one that is B-LTA already: the current validation data of every signature and
    time-stamp in the file, then a document time-stamp from our TSA with its own
    validation data. Extend again before ``X-Archive-Expires`` (the new time-stamp's TSA
    certificate's end). Nothing is stored on our side, so a retried call simply adds one
    more valid time-stamp: no idempotency key is needed."""
    data, _revocation = _upload(call.settings.max_upload_mb)
    extended = wiring().pades().extend(data)
    return Response(extended.data, status=200, mimetype="application/pdf", headers={
        "Content-Disposition": 'attachment; filename="extended.pdf"',
        "X-Signature-Level": "PAdES-B-LTA",
        "X-Archive-Timestamp-Field": extended.field_name,
        "X-Archive-Expires": extended.archive_expires.isoformat(),
        "X-Document-SHA256": extended.sha256})

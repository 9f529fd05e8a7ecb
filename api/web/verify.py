"""The public verification page: ``/web/verify``, without login.

Anyone drops a PDF and reads, in French or Arabic, who signed it, in what capacity and for
which commune (as the signing certificate says), when, whether the document is intact since,
and whether each signature and its certificate are valid now. The service is the
application's verifier (the one ``POST /v1/verify`` uses, reached through the app's
extensions, not through the API's blueprint); the size limit is the API's
(``TAWQI_MAX_UPLOAD_MB``), and each client address may check ``TAWQI_RATE_LIMIT_VERIFY``
files per window. The page shows no personal data beyond the signature's own: not even the
CIN or serial number the certificate carries, nor the file.

Each signature shows its ETSI indication and, in words of the reader's language, the
sub-indication (``verify.sub.*`` in the catalogues; one we have no words for reads as
GENERIC). The visitor may add CRLs and OCSP responses for a document signed elsewhere, as
``POST /v1/verify`` takes them.

``/web/s/<id>`` is a stamped signature's public status page (``/s/<id>``, the URL in the
stamp's QR code, redirects there: :mod:`api.web.link`).
"""

from __future__ import annotations

from typing import Any

from flask import abort, request

from api import ratelimit
from api.routing import client_address
from api.web.pages import FormError, _html, bp
from api.web.session import runtime
from api.wiring.flaskapp import wiring
from core.errors import InvalidInput, RateLimited
from pki.signing.public import signature_status
from pki.signing.revinfo import parse_uploaded
from pki.signing.verification import VerificationReport

#: ETSI EN 319 102-1 sub-indications the page has words for (``verify.sub.<name>``).
SUB_INDICATIONS = (
    "FORMAT_FAILURE", "HASH_FAILURE", "SIG_CRYPTO_FAILURE", "REVOKED", "REVOKED_NO_POE",
    "REVOKED_CA_NO_POE", "OUT_OF_BOUNDS_NO_POE", "OUT_OF_BOUNDS_NOT_REVOKED",
    "NO_CERTIFICATE_CHAIN_FOUND", "NO_SIGNING_CERTIFICATE_FOUND", "TRY_LATER",
    "CERTIFICATE_CHAIN_GENERAL_FAILURE", "CHAIN_CONSTRAINTS_FAILURE", "SIG_CONSTRAINTS_FAILURE",
    "CRYPTO_CONSTRAINTS_FAILURE", "CRYPTO_CONSTRAINTS_FAILURE_NO_POE", "EXPIRED",
    "NOT_YET_VALID", "NO_POE", "TIMESTAMP_ORDER_FAILURE", "POLICY_PROCESSING_ERROR",
    "SIGNATURE_POLICY_NOT_AVAILABLE", "SIGNED_DATA_NOT_FOUND", "GENERIC")
MAX_REVOCATION_FILES = 20


def sub_key(sub_indication: str) -> str:
    """The catalogue key that says ``sub_indication`` in words."""
    return "verify.sub." + (sub_indication if sub_indication in SUB_INDICATIONS else "GENERIC")


def _page(status: int = 200, report: VerificationReport | None = None,
          form_error: FormError | None = None) -> Any:
    return _html("verify.html", status, report=report, form_error=form_error,
                 max_mb=runtime().settings.max_upload_mb, sub_key=sub_key)


@bp.get("/verify")
def verify() -> Any:
    return _page()


@bp.post("/verify")
def verify_post() -> Any:
    rt = runtime()
    try:
        with rt.unit_of_work() as session:
            ratelimit.enforce(session, rt.clock,
                              [(f"verify:{client_address()}",
                                ratelimit.limit_of(rt.settings, "verify"))],
                              "verifications")
        upload = request.files.get("document")
        if upload is None or not upload.filename:
            raise InvalidInput("choose a PDF", field="document")
        files = [(item.filename or "", item.read())
                 for item in request.files.getlist("revocation")[:MAX_REVOCATION_FILES + 1]
                 if item.filename]
        revocation = parse_uploaded(files, max_files=MAX_REVOCATION_FILES)
        report = wiring().verifier().verify(upload.read(), revocation=revocation)
    except (InvalidInput, RateLimited) as exc:
        return _page(exc.status, form_error=FormError.of(exc, "verify"))
    return _page(report=report)


# --------------------------------------------------------------------------- status page


@bp.get("/s/<public_id>")
def signature(public_id: str) -> Any:
    """A stamped signature's public status page (the stamp's QR code leads here through
    ``/s/<id>``): what the stamp says, the signing time and the certificate's status
    today, with a link to this page's form to check the PDF itself. No login; counted
    against the same per-address limit as the form. An unknown id is a 404 page."""
    rt = runtime()
    with rt.unit_of_work() as session:
        ratelimit.enforce(session, rt.clock,
                          [(f"verify:{client_address()}",
                            ratelimit.limit_of(rt.settings, "verify"))],
                          "verifications")
        found = signature_status(session, public_id, rt.clock.now())
    if found is None:
        abort(404)
    return _html("signature.html", status=found)

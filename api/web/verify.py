"""The public verification page: ``/web/verify``, without login.

Anyone drops a PDF and reads, in French or Arabic, who signed it, in what capacity and for
which commune (as the signing certificate says), when, whether the document is intact since,
and whether each signature and its certificate are valid now. The service is the
application's verifier (the one ``POST /v1/verify`` uses, reached through the app's
extensions, not through the API's blueprint); the size limit is the API's
(``TAWQI_MAX_UPLOAD_MB``), and each client address may check ``TAWQI_RATE_LIMIT_VERIFY``
files per window. The page shows no personal data beyond the signature's own: not even the
CIN or serial number the certificate carries, nor the file.
"""

from __future__ import annotations

from typing import Any

from flask import request

from api import ratelimit
from api.routing import client_address
from api.web.pages import FormError, _html, bp
from api.web.session import runtime
from api.wiring.flaskapp import wiring
from core.errors import InvalidInput, RateLimited
from pki.signing.verification import VerificationReport


def _page(status: int = 200, report: VerificationReport | None = None,
          form_error: FormError | None = None) -> Any:
    return _html("verify.html", status, report=report, form_error=form_error,
                 max_mb=runtime().settings.max_upload_mb)


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
        report = wiring().verifier().verify(upload.read())
    except (InvalidInput, RateLimited) as exc:
        return _page(exc.status, form_error=FormError.of(exc, "verify"))
    return _page(report=report)

"""RFC 9457 problem details: the one place where errors become HTTP responses.

Domain errors (``core.errors.TawqiError`` and the token layer's duck-typed ``HsmError``)
keep their stable ``type`` slug, title, status, detail and machine-readable extras. HTTP
protocol errors raised by Flask (400, 404, 405, 413, 415, 429…) get a slug of their own.
Anything else is a 500 whose body says nothing about the cause; the traceback goes to the
log with the request id that the response carries.
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

from flask import Flask, Response, g, request
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException

from core.errors import TawqiError

log = logging.getLogger("tawqi.api")

PROBLEM_BASE = "https://tawqi.ma/problems/"
MEDIA_TYPE = "application/problem+json"
# A domain fact named like a standard member is renamed rather than dropped or clashing.
_RENAMED = {"type": "kind", "title": "object_title", "status": "current_status",
            "detail": "details", "instance": "object_instance", "request_id": "object_request_id"}

# Werkzeug's HTTP errors: status -> (slug, title)
HTTP_PROBLEMS: dict[int, tuple[str, str]] = {
    400: ("malformed-request", "Malformed request"),
    401: ("unauthenticated", "Authentication required"),
    403: ("forbidden", "Forbidden"),
    404: ("route-not-found", "No such resource"),
    405: ("method-not-allowed", "Method not allowed"),
    406: ("not-acceptable", "Not acceptable"),
    408: ("request-timeout", "Request timeout"),
    411: ("length-required", "Length required"),
    413: ("payload-too-large", "Request body too large"),
    414: ("uri-too-long", "URI too long"),
    415: ("unsupported-media-type", "Unsupported media type"),
    416: ("range-not-satisfiable", "Range not satisfiable"),
    428: ("precondition-required", "Precondition required"),
    429: ("rate-limited", "Too many requests"),
    431: ("headers-too-large", "Request headers too large"),
    500: ("internal-error", "Internal error"),
    501: ("not-implemented", "Not implemented"),
    503: ("unavailable", "Service unavailable"),
}


# CSC (v1 and v2) and OAuth 2.0 name their errors ``{error, error_description}``: under
# these prefixes a problem carries both shapes. A domain error may name its own code
# (``csc_error``); otherwise the status decides.
CSC_PREFIXES = ("/csc/", "/oauth2/")
CSC_ERRORS_BY_STATUS = {400: "invalid_request", 401: "invalid_token", 403: "access_denied",
                        404: "invalid_request", 405: "invalid_request",
                        409: "invalid_request", 413: "invalid_request",
                        415: "invalid_request", 422: "invalid_request",
                        423: "access_denied", 429: "temporarily_unavailable",
                        503: "temporarily_unavailable"}
CSC_ERRORS_BY_SLUG = {"signing-sad-invalid": "invalid_request",
                      "signing-sad-mismatch": "invalid_request",
                      "signing-otp-invalid": "invalid_otp",
                      "signing-otp-closed": "invalid_otp",
                      "pin-incorrect": "invalid_pin", "pin-locked": "access_denied",
                      "signing-credential-not-found": "invalid_request",
                      "signing-credential-unusable": "invalid_request"}


def csc_error(status: int, slug: str) -> str:
    """The CSC/OAuth ``error`` code of a problem."""
    return CSC_ERRORS_BY_SLUG.get(slug) or CSC_ERRORS_BY_STATUS.get(status, "server_error")


def request_id() -> str:
    rid: str | None = g.get("request_id")
    if rid is None:
        rid = uuid.uuid4().hex
        g.request_id = rid
    return rid


def problem(status: int, slug: str, title: str, detail: str,
            headers: dict[str, str] | None = None, extras: dict[str, Any] | None = None,
            ) -> Response:
    body: dict[str, Any] = {"type": PROBLEM_BASE + slug, "title": title, "status": status,
                            "detail": detail}
    body.update({_RENAMED.get(k, k): v for k, v in (extras or {}).items()})
    body["request_id"] = request_id()
    if request.path.startswith(CSC_PREFIXES):
        body.setdefault("error", csc_error(status, slug))
        body.setdefault("error_description", detail)
    response = Response(json.dumps(body, ensure_ascii=False, default=str), status=status,
                        mimetype=MEDIA_TYPE)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def is_domain_error(exc: BaseException) -> bool:
    """A TawqiError, or an error with the same shape (hsm's errors import nothing of ours)."""
    if isinstance(exc, TawqiError):
        return True
    return all(hasattr(exc, a) for a in ("type", "title", "status", "detail", "extras")) \
        and isinstance(getattr(exc, "status", None), int)


def from_domain(exc: Any) -> Response:
    status = int(exc.status)
    extras = dict(exc.extras or {})
    headers: dict[str, str] = {}
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="tawqi"'
    if status == 429 and "retry_after" in extras:
        headers["Retry-After"] = str(extras["retry_after"])
    if status >= 500:
        # Server-side faults keep their slug but say nothing else about the cause.
        log.error("request %s failed: %s (%s)", request_id(), exc.type, exc.detail)
        return problem(status, exc.type, exc.title,
                       "the service could not complete the request; retry later",
                       headers=headers)
    code = getattr(exc, "csc_error", None)
    if isinstance(code, str) and request.path.startswith(CSC_PREFIXES):
        extras.setdefault("error", code)
    return problem(status, exc.type, exc.title, exc.detail, headers=headers, extras=extras)


def from_http(exc: HTTPException) -> Response:
    status = exc.code or 500
    slug, title = HTTP_PROBLEMS.get(status, ("http-error", exc.name or "HTTP error"))
    headers = {k: v for k, v in exc.get_headers() if k.lower() != "content-type"}
    detail = exc.description or title
    if status == 404:
        detail = f"no resource at {request.path}"
    elif status == 405:
        detail = f"{request.method} is not allowed on {request.path}"
    elif status == 413:
        limit = request.max_content_length
        detail = "the request body is too large" + (
            f" (at most {limit} bytes)" if limit else "")
    return problem(status, slug, title, detail, headers=headers)


def install(app: Flask) -> None:
    """Register the handlers on ``app``."""

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> Response:
        return from_http(exc)

    @app.errorhandler(OperationalError)
    def _database(exc: OperationalError) -> Response:
        log.error("request %s: database unavailable: %s", request_id(),
                  type(exc.orig).__name__ if exc.orig else "OperationalError")
        return problem(503, "unavailable", "Service unavailable",
                       "the database is unavailable; retry later", headers={"Retry-After": "5"})

    @app.errorhandler(Exception)
    def _any(exc: Exception) -> Response:
        if is_domain_error(exc):
            return from_domain(exc)
        log.exception("request %s failed", request_id())
        return problem(500, "internal-error", "Internal error",
                       "the service could not complete the request")


def catalog() -> list[tuple[str, int, str, str]]:
    """Every known problem type: (slug, status, title, description), for the docs page."""
    seen: dict[str, tuple[str, int, str, str]] = {}

    def walk(cls: type) -> None:
        slug = getattr(cls, "type", None)
        if isinstance(slug, str) and slug not in seen:
            doc = (cls.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")
            seen[slug] = (slug, int(cls.status), str(cls.title), doc)  # type: ignore[attr-defined]
        subclasses: list[type] = cls.__subclasses__()
        for sub in subclasses:
            walk(sub)

    walk(TawqiError)
    try:
        from hsm.errors import HsmError
    except ImportError:  # the token layer is optional for the docs
        HsmError = None  # type: ignore[assignment,misc]
    if HsmError is not None:
        walk(HsmError)
    for status, (slug, title) in HTTP_PROBLEMS.items():
        seen.setdefault(slug, (slug, status, title, "HTTP protocol error"))
    return sorted(seen.values())

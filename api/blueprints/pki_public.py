"""Public PKI endpoints, the URLs written into our certificates.

- ``GET /ca/<id>.crt``: a CA certificate (caIssuers), DER.
- ``GET /crl/<id>.crl``: the latest full CRL (CRL distribution point), DER.
- ``POST /ocsp`` and ``GET /ocsp/<base64 request>``: RFC 6960 / RFC 5019 OCSP, answered
  from pre-signed responses held in memory (:class:`pki.ocsp.OcspResponder`).
- ``POST /tsa``: RFC 3161 time-stamps.

Views parse and serialise; the responder, the TSA and the queries are in ``pki``. The
state (responder, lazily loaded TSA/OCSP keys) lives in ``app.extensions["tawqi.pki"]``;
:func:`install` lets a caller provide it (tests, or a process that already holds the keys).

The OCSP views are plain routes, not declared operations: a declared operation opens a
database transaction per request, and the point of pre-signed OCSP is that answering costs
neither a signature nor a query. They are still listed in the OpenAPI document (see
:func:`_document_ocsp`). All four are public: no authentication.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import format_datetime
from typing import cast

from flask import Flask, Response, current_app, request
from sqlalchemy.orm import Session, sessionmaker

from api.routing import ApiBlueprint, Call, Operation, runtime
from core.clock import Clock, as_utc
from core.errors import TawqiError
from pki import ca, crl, ocsp, tsa
from pki.authority import Authority
from pki.errors import AuthorityUnavailable
from pki.profiles import ARC_TSA, Profile

bp = ApiBlueprint("pki_public", __name__, tag="PKI",
                  description="Public PKI services: CA certificates, CRLs, OCSP and "
                              "time-stamps, at the URLs written into our certificates.")

EXTENSION_KEY = "tawqi.pki"
MAX_OCSP_REQUEST = 8192


@dataclass
class PkiPublic:
    """What the public endpoints need, built once per process."""

    sessions: sessionmaker[Session]
    clock: Clock
    profile: Profile
    load_authority: Callable[[], Authority | None]
    # Whether the loaded keys can still sign (their token still logged in in this process);
    # False after the token server restarted: the authority is then loaded again.
    still_usable: Callable[[], bool] | None = None
    responder: ocsp.OcspResponder = field(init=False)
    _authority: Authority | None = field(default=None, init=False)
    _loaded: bool = field(default=False, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def __post_init__(self) -> None:
        self.responder = ocsp.OcspResponder(self.sessions, self.clock,
                                            authority=self.authority)

    def authority(self) -> Authority | None:
        """The CA with its OCSP and TSA keys, loaded on first need (None without a PIN)."""
        if self._loaded and self._authority is not None and self.still_usable is not None \
                and not self.still_usable():
            with self._lock:
                self._loaded = False
        if not self._loaded:
            with self._lock:
                if not self._loaded:
                    self._authority = self.load_authority()
                    self._loaded = True
        return self._authority


def install(app: Flask, state: PkiPublic) -> None:
    app.extensions[EXTENSION_KEY] = state


def _from_runtime() -> PkiPublic:
    rt = runtime()
    settings = rt.settings
    profile = Profile.from_settings(settings)

    def load() -> Authority | None:
        pin = settings.service_pin
        if not pin:
            return None
        # PIN first, outside any transaction (wrong PINs are counted in the database).
        rt.tokens().check_pin(settings.ca_token_label, pin)
        with rt.unit_of_work() as session:
            return ca.load_authority(session, rt.tokens(), profile, pin=pin)

    return PkiPublic(rt.sessions, rt.clock, profile, load,
                     lambda: rt.tokens().logged_in(settings.ca_token_label))


_state_lock = threading.Lock()


def state() -> PkiPublic:
    found = current_app.extensions.get(EXTENSION_KEY)
    if found is None:
        with _state_lock:
            found = current_app.extensions.get(EXTENSION_KEY)
            if found is None:
                found = current_app.extensions[EXTENSION_KEY] = _from_runtime()
    return cast(PkiPublic, found)


DER = {"type": "string", "format": "binary"}


def _ocsp_response(answer: ocsp.OcspAnswer, pki: PkiPublic) -> Response:
    return Response(answer.der, status=200, headers=answer.headers(as_utc(pki.clock.now())))


def ocsp_post() -> Response:
    """RFC 6960 OCSP over POST (body: DER OCSPRequest)."""
    pki = state()
    if (request.content_length or 0) > MAX_OCSP_REQUEST:
        return _ocsp_response(ocsp.OcspAnswer(ocsp.MALFORMED), pki)
    answer = pki.responder.respond(request.get_data(cache=False))
    response = _ocsp_response(answer, pki)
    if answer.signed:  # RFC 5019: POST answers are not for shared caches
        response.headers["Cache-Control"] = "no-cache"
    return response


def ocsp_get(encoded: str) -> Response:
    """RFC 5019 OCSP over GET: the path is the URL-encoded base64 of the DER request."""
    pki = state()
    if len(encoded) > MAX_OCSP_REQUEST:
        return _ocsp_response(ocsp.OcspAnswer(ocsp.MALFORMED), pki)
    return _ocsp_response(pki.responder.respond_get(encoded), pki)


bp.add_url_rule("/ocsp", "ocsp_post", ocsp_post, methods=["POST"])
bp.add_url_rule("/ocsp/", "ocsp_post_slash", ocsp_post, methods=["POST"])
bp.add_url_rule("/ocsp/<path:encoded>", "ocsp_get", ocsp_get, methods=["GET"],
                merge_slashes=False)


def _document_ocsp() -> None:
    """List the plain OCSP routes in the OpenAPI document like declared operations."""
    common = {"action": None, "tag": bp.tag, "blueprint": bp.name,
              "produces": {"application/ocsp-response": DER}}
    bp.operations.append(Operation(
        method="POST", rule="/ocsp", endpoint="ocsp_post", view=ocsp_post,
        summary="OCSP (RFC 6960) over POST",
        description="Answers from pre-signed responses: good, revoked (time and reason) or "
                    "unknown; unauthorized for another CA's certificates.",
        consumes={"application/ocsp-request": DER}, operation_id="pki_public.ocsp_post",
        **common))  # type: ignore[arg-type]
    bp.operations.append(Operation(
        method="GET", rule="/ocsp/<path:encoded>", endpoint="ocsp_get", view=ocsp_get,
        summary="OCSP (RFC 5019) over GET",
        description="The path is the URL-encoded base64 of the DER OCSPRequest; answers "
                    "carry RFC 5019 cache headers.", operation_id="pki_public.ocsp_get",
        **common))  # type: ignore[arg-type]


_document_ocsp()


@bp.operation("POST", "/tsa", action=None, summary="Time-stamp (RFC 3161)",
              consumes={"application/timestamp-query": DER},
              produces={"application/timestamp-reply": DER}, errors=(413, 415, 503))
def tsa_post(call: Call) -> Response:
    """A DER TimeStampReq in, a DER TimeStampResp out (granted, or rejection with a
    failure code). 503 when the TSA key is not loaded (no TAWQI_SERVICE_PIN)."""
    pki = state()
    if request.mimetype != "application/timestamp-query":
        raise UnsupportedBody("send the request as application/timestamp-query")
    if (request.content_length or 0) > tsa.MAX_REQUEST_BYTES:
        raise BodyTooLarge(f"a time-stamp request has at most {tsa.MAX_REQUEST_BYTES} bytes")
    authority = pki.authority()
    if authority is None or authority.tsa_signer is None:
        raise AuthorityUnavailable("the time-stamping key is not loaded on this server")
    result = tsa.timestamp(authority.tsa_signer, pki.clock, request.get_data(cache=False),
                           policy_oid=pki.profile.policy(ARC_TSA))
    return Response(result.der, status=200, mimetype="application/timestamp-reply")


@bp.operation("GET", "/crl/<int:authority_id>.crl", action=None,
              summary="The latest CRL of one of our CAs",
              produces={"application/pkix-crl": DER})
def crl_get(call: Call, authority_id: int) -> Response:
    """The full CRL at the CRL distribution point written into our certificates."""
    info = crl.latest_crl(call.session, authority_id)
    max_age = max(int((info.next_update - as_utc(call.clock.now())).total_seconds()), 0)
    return Response(info.der, status=200, mimetype="application/pkix-crl", headers={
        "Last-Modified": format_datetime(info.this_update, usegmt=True),
        "Expires": format_datetime(info.next_update, usegmt=True),
        "Cache-Control": f"max-age={min(max_age, 3600)}, public, no-transform",
    })


@bp.operation("GET", "/ca/<int:authority_id>.crt", action=None,
              summary="A CA certificate (caIssuers)", produces={"application/pkix-cert": DER})
def ca_get(call: Call, authority_id: int) -> Response:
    """The DER certificate of the root or an issuing CA."""
    return Response(ca.authority_der(call.session, authority_id), status=200,
                    mimetype="application/pkix-cert",
                    headers={"Cache-Control": "max-age=86400, public"})


class UnsupportedBody(TawqiError):
    type = "unsupported-media-type"
    title = "Unsupported media type"
    status = 415


class BodyTooLarge(TawqiError):
    type = "payload-too-large"
    title = "Request too large"
    status = 413

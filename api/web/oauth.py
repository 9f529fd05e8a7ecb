"""The holder's authorisation page of the OAuth 2.0 code flow (``/web/oauth2/authorize``,
reached from ``/oauth2/authorize``): no login, the PIN and the SMS code are the holder's
consent, as in the explicit mode.

The page shows who asks (the API client's name), what is signed (the description the
client gave, the number of signatures and each hash), asks for the code by SMS, then takes
the PIN and the code. On success the browser goes back to the client's registered
``redirect_uri`` with ``code`` and ``state``; a refusal goes back with
``error=access_denied``. A request with an unknown client or an unregistered redirect URI
redirects nowhere (RFC 6749 §4.1.2.1); other faults of the request go back as
``error=invalid_request`` (or the precise OAuth error).

Every POST carries the CSRF token and the request's parameters, checked again each time.
Attempts are rate-limited as in the API (``pin`` and ``otp`` per credential). PINs and
codes are passed to the service and never written back into the page.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode, urlsplit

from flask import redirect, request
from werkzeug.wrappers import Response

from api import accounts, ratelimit
from api.routing import client_address
from api.web.pages import CSP, FormError, _html, bp
from api.web.session import runtime
from api.wiring.flaskapp import wiring
from core.errors import Conflict, Forbidden, InvalidInput, NotFound, RateLimited, Unavailable
from hsm.errors import PinIncorrect, PinLocked
from pki.signing.oauth import CodeRequest, InvalidAuthorizationRequest, InvalidRedirect

#: The request's parameters, carried from the query string into the forms.
PARAMS = ("response_type", "client_id", "redirect_uri", "scope", "code_challenge",
          "code_challenge_method", "state", "credentialID", "numSignatures", "hashes",
          "hashAlgorithmOID", "description", "clientData")
FORM_ERRORS = (InvalidInput, Conflict, NotFound, Forbidden, RateLimited, Unavailable,
               PinIncorrect, PinLocked)
SHA256_OID = "2.16.840.1.101.3.4.2.1"
ACTOR = "holder:oauth"


def _params() -> dict[str, str]:
    source = request.form if request.method == "POST" else request.args
    return {k: source.get(k, "") for k in PARAMS if source.get(k)}


def _back(params: dict[str, str], **values: str) -> Response:
    """Back to the client's redirect URI (already checked as registered)."""
    values = {k: v for k, v in values.items() if v}
    if params.get("state"):
        values["state"] = params["state"]
    uri = params["redirect_uri"]
    return redirect(uri + ("&" if "?" in uri else "?") + urlencode(values), 303)


def _check(params: dict[str, str]) -> tuple[CodeRequest, str]:
    """The checked request and the client's display name."""
    rt = runtime()
    oauth = wiring().oauth()
    with rt.unit_of_work() as session:
        client = accounts.api_client(session, params.get("client_id", ""))
        if client is None:
            raise InvalidRedirect("unknown client_id")
        count_text = params.get("numSignatures", "")
        try:
            count = int(count_text) if count_text else None
        except ValueError as exc:
            raise InvalidAuthorizationRequest("numSignatures is a number",
                                              error="invalid_request") from exc
        hashes_ = [h for h in params.get("hashes", "").split(",") if h]
        checked = oauth.check_request(
            session, client=client.key,
            redirect_uri=params.get("redirect_uri", ""),
            response_type=params.get("response_type", ""), scope=params.get("scope", ""),
            code_challenge=params.get("code_challenge", ""),
            code_challenge_method=params.get("code_challenge_method", ""),
            credential_id=params.get("credentialID", ""), hashes_=hashes_,
            hash_algorithm_oid=params.get("hashAlgorithmOID") or SHA256_OID,
            num_signatures=count, description=params.get("description", ""),
            state=params.get("state", ""))
        return checked, client.name


def _page(params: dict[str, str], checked: CodeRequest, client_name: str, *,
          status: int = 200, form_error: FormError | None = None, sent: str = "") -> Any:
    response = _html("oauth_authorize.html", status, params=params, request=checked,
                     client_name=client_name, hashes=checked.hashes_b64(), sent=sent,
                     form_error=form_error, form={})
    # The forms end in a redirect to the client: browsers apply form-action to it.
    target = urlsplit(checked.redirect_uri)
    response.headers["Content-Security-Policy"] = CSP.replace(
        "form-action 'self'", f"form-action 'self' {target.scheme}://{target.netloc}")
    return response


def _invalid(params: dict[str, str], exc: Exception) -> Any:
    if isinstance(exc, InvalidRedirect):
        return _html("oauth_invalid.html", 400)
    error = getattr(exc, "extras", {}).get("error", "invalid_request")
    return _back(params, error=str(error), error_description=getattr(exc, "detail", ""))


@bp.get("/oauth2/authorize")
def oauth_authorize() -> Any:
    params = _params()
    try:
        checked, client_name = _check(params)
    except (InvalidRedirect, InvalidAuthorizationRequest) as exc:
        return _invalid(params, exc)
    return _page(params, checked, client_name)


def _limit(kind: str, credential_id: str) -> None:
    rt = runtime()
    with rt.unit_of_work() as session:
        limit = ratelimit.limit_of(rt.settings, kind)  # type: ignore[arg-type]
        ratelimit.enforce(session, rt.clock, [
            (f"{kind}:cred:{credential_id.lower()}", limit),
            (f"{kind}:web:{client_address()}", limit)],
            "PIN operations" if kind == "pin" else "one-time-code operations")


@bp.post("/oauth2/authorize")
def oauth_authorize_post() -> Any:
    params = _params()
    try:
        checked, client_name = _check(params)
    except (InvalidRedirect, InvalidAuthorizationRequest) as exc:
        return _invalid(params, exc)
    action = request.form.get("action", "")
    if action == "deny":
        return _back(params, error="access_denied",
                     error_description="the holder refused")
    try:
        if action == "send":
            _limit("otp", checked.credential_id)
            sent = wiring().remote().send_otp(checked.credential_id, client=checked.client,
                                              actor=ACTOR)
            return _page(params, checked, client_name, sent=sent.phone_hint)
        if action != "authorize":
            raise InvalidInput("unknown action")
        pin, code = request.form.get("pin", ""), request.form.get("otp", "")
        if not pin or not code:
            raise InvalidInput("the PIN and the code are required", field="pin")
        _limit("pin", checked.credential_id)
        issued = wiring().oauth().issue(checked, pin=pin, otp=code, actor=ACTOR)
    except FORM_ERRORS as exc:
        return _page(params, checked, client_name, status=exc.status,
                     form_error=FormError.of(exc, "authorize"))  # type: ignore[arg-type]
    return _back(params, code=issued)


__all__ = ["oauth_authorize", "oauth_authorize_post"]

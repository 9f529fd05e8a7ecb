"""OAuth 2.0 for the CSC ``credential`` scope: authorisation code with PKCE (RFC 6749 §4.1,
RFC 7636), as CSC v2 §8.3 names it.

``GET /oauth2/authorize`` sends the holder's browser to the Tawqi page that shows what they
are about to sign (``/web/oauth2/authorize``, :mod:`api.web.oauth`); the page redirects back
to the client with a ``code``. ``POST /oauth2/token`` exchanges the code, with the
``code_verifier``, for an access token: the SAD, bound to the credential, the hashes and
their number, which ``signatures/signHash`` takes as ``SAD``.

The ``service`` scope stays what it was: the client's API key as bearer (client
credentials) for ``credentials/list`` and ``credentials/info``. The client authenticates at
the token endpoint with that key: ``client_secret`` (form or HTTP Basic, with
``client_id`` the key's public prefix) or ``Authorization: Bearer``.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field

from flask import Response, redirect, request
from werkzeug.wrappers import Response as BaseResponse

from api import accounts
from api.routing import ApiBlueprint, Call
from api.schema import rule
from api.wiring.flaskapp import wiring
from core.errors import TawqiError
from pki.signing.oauth import InvalidClient, InvalidGrant

bp = ApiBlueprint("oauth2", __name__, url_prefix="/oauth2", tag="Remote signing (OAuth 2.0)",
                  description="Authorisation code with PKCE for the CSC credential scope: "
                              "the holder authorises on a Tawqi page, the platform never "
                              "handles the PIN.")

TOKEN_FORM = {"type": "object", "required": ["grant_type", "code", "code_verifier",
                                             "redirect_uri"], "properties": {
    "grant_type": {"type": "string", "enum": ["authorization_code"]},
    "code": {"type": "string"}, "code_verifier": {"type": "string"},
    "redirect_uri": {"type": "string"}, "client_id": {"type": "string"},
    "client_secret": {"type": "string"}}}
TOKEN_OUT = {"type": "object", "properties": {
    "access_token": {"type": "string"}, "token_type": {"type": "string"},
    "expires_in": {"type": "integer"}, "credentialID": {"type": "string"},
    "numSignatures": {"type": "integer"}}}


@dataclass(frozen=True)
class AuthorizeQuery:
    response_type: str = "code"
    client_id: str = field(default="", metadata=rule(max_length=16))
    redirect_uri: str = field(default="", metadata=rule(max_length=500))
    scope: str = "credential"
    code_challenge: str = field(default="", metadata=rule(max_length=128))
    code_challenge_method: str = "S256"
    state: str | None = field(default=None, metadata=rule(max_length=500))
    credentialID: str = field(default="", metadata=rule(max_length=64))
    numSignatures: int | None = field(default=None, metadata=rule(minimum=1))
    hashes: str = field(default="", metadata=rule(
        description="Comma-separated base64url hashes the holder authorises"))
    hashAlgorithmOID: str = "2.16.840.1.101.3.4.2.1"
    description: str | None = field(default=None, metadata=rule(
        max_length=500, description="What is signed (the document's name), shown to "
                                    "the holder"))
    lang: str | None = field(default=None, metadata=rule(max_length=10))
    clientData: str | None = field(default=None, metadata=rule(max_length=500))


class _TokenRequestInvalid(TawqiError):
    type = "oauth-invalid-request"
    title = "Invalid token request"
    status = 400
    csc_error = "invalid_request"


class _UnsupportedGrant(TawqiError):
    type = "oauth-unsupported-grant-type"
    title = "Unsupported grant type"
    status = 400
    csc_error = "unsupported_grant_type"


@bp.operation("GET", "/authorize", action=None, query=AuthorizeQuery,
              produces={"text/html": {"type": "string"}}, status=302,
              summary="Send the holder to the page where they authorise the signature")
def authorize(call: Call, query: AuthorizeQuery) -> BaseResponse:
    """The holder's browser lands here; it is sent on to ``/web/oauth2/authorize`` with
    the same parameters, where the request is checked and shown."""
    target = "/web/oauth2/authorize"
    if request.query_string:
        target += "?" + request.query_string.decode("ascii", "replace")
    return redirect(target, 302)


def _client(call: Call) -> str:
    """The client's key (``apikey:<id>``), authenticated by its API key."""
    secret = request.form.get("client_secret")
    client_id = request.form.get("client_id")
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "basic" and value:
        try:
            client_id, _, secret = base64.b64decode(value).decode("utf-8").partition(":")
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidClient("malformed HTTP Basic credentials") from exc
    elif scheme.lower() == "bearer" and value and not secret:
        secret = value.strip()
    if not secret:
        raise InvalidClient("authenticate with the API key (client_secret, HTTP Basic or "
                            "Bearer)")
    with call.runtime.unit_of_work() as session:
        try:
            principal = accounts.authenticate(session, call.clock, secret)
        except TawqiError as exc:
            raise InvalidClient("unknown or revoked client") from exc
        if principal.kind != "apikey":
            raise InvalidClient("only an API client exchanges codes")
        if client_id:
            found = accounts.api_client(session, client_id)
            if found is None or found.key != principal.key:
                raise InvalidClient("client_id does not name this API key")
    return principal.key


@bp.operation("POST", "/token", action=None, transactional=False,
              consumes={"application/x-www-form-urlencoded": TOKEN_FORM},
              produces={"application/json": TOKEN_OUT}, errors=(400, 401),
              summary="Exchange an authorisation code and its PKCE verifier for a SAD")
def token(call: Call) -> Response:
    """``grant_type=authorization_code``, ``code``, ``redirect_uri``, ``code_verifier``;
    the answer's ``access_token`` is the SAD for ``signatures/signHash``, bound to the
    credential, the hashes and their number, single use, ``expires_in`` seconds."""
    if request.mimetype != "application/x-www-form-urlencoded":
        raise _TokenRequestInvalid("send the form as application/x-www-form-urlencoded")
    form = request.form
    if form.get("grant_type") != "authorization_code":
        raise _UnsupportedGrant("grant_type must be authorization_code (the service scope "
                                "is the API key itself)")
    client = _client(call)
    code, verifier = form.get("code", ""), form.get("code_verifier", "")
    redirect_uri = form.get("redirect_uri", "")
    if not code or not verifier or not redirect_uri:
        raise _TokenRequestInvalid("code, redirect_uri and code_verifier are required")
    found = wiring().oauth().exchange(code, client=client, redirect_uri=redirect_uri,
                                      code_verifier=verifier, actor=client)
    expires_in = max(0, int((found.expires_at - call.clock.now()).total_seconds()))
    body = {"access_token": found.access_token, "token_type": "SAD",
            "expires_in": expires_in, "credentialID": found.credential_id,
            "numSignatures": found.num_signatures}
    return Response(json.dumps(body), status=200, mimetype="application/json",
                    headers={"Cache-Control": "no-store", "Pragma": "no-cache"})


__all__ = ["InvalidGrant", "bp"]

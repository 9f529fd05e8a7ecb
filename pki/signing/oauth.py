"""OAuth 2.0 authorisation code with PKCE (RFC 6749 §4.1, RFC 7636) for the CSC
``credential`` scope: the holder authorises on a Tawqi page, the platform never sees the PIN.

1. The platform sends the holder's browser to ``/oauth2/authorize`` with its ``client_id``,
   a registered ``redirect_uri``, a ``code_challenge`` (S256), the credential, the hashes and
   their number. :meth:`OAuthCodes.check_request` validates all of it into an
   :class:`CodeRequest`.
2. The holder reads what they sign, asks for the SMS code and types it with the PIN;
   :meth:`OAuthCodes.issue` runs the very authorisation of the explicit mode
   (:meth:`RemoteSigning.authorize`, bound to the platform's client, the credential, the
   hashes and their number) and returns a code. The SAD waits sealed under a key derived
   from the code; only the code's SHA-256 is stored.
3. The platform exchanges the code (:meth:`OAuthCodes.exchange`) with the ``code_verifier``
   and gets the SAD as its access token, which ``signatures/signHash`` takes as ``SAD``.

Invariants: a code is single-use and short-lived (``code_ttl``); any failed exchange of a
known code (wrong verifier, client or redirect URI, reuse, expiry) spends the code and the
SAD behind it (RFC 6749 §4.1.2: a code used twice revokes what it gave). Neither the PIN,
the code nor the SAD is stored in clear.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from core.audit import record
from core.clock import Clock, as_utc
from core.db import transaction
from core.errors import Forbidden, InvalidInput
from pki.signing.errors import CredentialNotFound
from pki.signing.models import (
    CODE_OPEN,
    CODE_USED,
    PURPOSE_HASH,
    SAD_ACTIVE,
    SAD_USED,
    OAuthCode,
    OAuthRedirect,
    SigningAuthorization,
)
from pki.signing.service import RemoteSigning, decode_hashes, parse_hash_algorithm

#: RFC 7636 §4.2: BASE64URL(SHA256(verifier)), 43 characters.
CHALLENGE = re.compile(r"^[A-Za-z0-9_-]{43}$")
#: RFC 7636 §4.1: 43 to 128 unreserved characters.
VERIFIER = re.compile(r"^[A-Za-z0-9._~-]{43,128}$")
CODE_TTL = timedelta(seconds=60)


class InvalidAuthorizationRequest(InvalidInput):
    """/oauth2/authorize was asked something it cannot grant (``error`` says what, in
    RFC 6749 §4.1.2.1 terms)."""

    type = "oauth-invalid-request"
    title = "Invalid authorisation request"


class InvalidRedirect(InvalidInput):
    """Unknown client, or a redirect URI it did not register: nobody is redirected."""

    type = "oauth-invalid-redirect"
    title = "Unknown client or redirect URI"


class InvalidGrant(InvalidInput):
    """The code is unknown, used, expired, or was issued to another client, redirect URI
    or PKCE challenge (RFC 6749 §5.2 ``invalid_grant``)."""

    type = "oauth-invalid-grant"
    title = "Invalid authorisation code"
    status = 400
    csc_error = "invalid_grant"


class InvalidClient(Forbidden):
    type = "oauth-invalid-client"
    title = "Client authentication failed"
    status = 401
    csc_error = "invalid_client"


@dataclass(frozen=True)
class CodeRequest:
    """A checked authorisation request: what the holder is shown and will authorise."""

    client: str
    redirect_uri: str
    code_challenge: str
    credential_id: str
    hashes: tuple[bytes, ...]
    hash_algorithm: str
    num_signatures: int
    description: str
    state: str

    def hashes_b64(self) -> list[str]:
        return [base64.b64encode(h).decode("ascii") for h in self.hashes]


@dataclass(frozen=True)
class Token:
    """What the exchange gives: the SAD (shown only here) and its lifetime."""

    access_token: str
    expires_at: datetime
    credential_id: str
    num_signatures: int

    def __repr__(self) -> str:
        return f"Token(credential_id={self.credential_id!r}, expires_at={self.expires_at!r})"


def s256(verifier: str) -> str:
    """RFC 7636 S256: BASE64URL-ENCODE(SHA256(ASCII(verifier))), no padding."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _box_key(code: str, row_id: str) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=row_id.encode("ascii"),
                info=b"tawqi-oauth-code-sad").derive(code.encode("ascii"))


def _box_aad(row: OAuthCode) -> bytes:
    return "|".join((row.id, row.client, row.redirect_uri, row.authorization_id)).encode()


def check_redirect_uri(uri: str) -> str:
    """An absolute https URI (or http on the loopback), no fragment (RFC 6749 §3.1.2)."""
    uri = uri.strip()
    parts = urlsplit(uri)
    loopback = parts.hostname in ("127.0.0.1", "localhost", "::1")
    if len(uri) > 500 or parts.fragment or not parts.netloc or "@" in parts.netloc or \
            any(c.isspace() or c in ";,'\"" for c in uri) or \
            not (parts.scheme == "https" or (parts.scheme == "http" and loopback)):
        raise InvalidInput("a redirect URI is an absolute https URL (http only on the "
                           "loopback) of at most 500 characters, without a fragment",
                           field="redirect_uri")
    return uri


def register_redirect(session: Session, clock: Clock, client: str, uri: str, *,
                      actor: str) -> str:
    """Register ``uri`` for the API client ``client`` (``apikey:<id>``); idempotent."""
    uri = check_redirect_uri(uri)
    exists = session.scalar(select(OAuthRedirect).where(
        OAuthRedirect.client == client, OAuthRedirect.redirect_uri == uri))
    if exists is None:
        session.add(OAuthRedirect(client=client, redirect_uri=uri,
                                  created_at=as_utc(clock.now())))
        record(session, clock, actor=actor, action="signing.oauth.redirect_added",
               object_type="client", object_id=client, summary={"redirect_uri": uri})
    return uri


def redirects(session: Session, client: str) -> list[str]:
    """The redirect URIs registered for ``client``."""
    return list(session.scalars(select(OAuthRedirect.redirect_uri).where(
        OAuthRedirect.client == client).order_by(OAuthRedirect.id)))


class OAuthCodes:
    """Redirect URIs, codes and their exchange. One instance per application."""

    def __init__(self, sessions: sessionmaker[Session], clock: Clock, remote: RemoteSigning,
                 *, code_ttl: timedelta = CODE_TTL) -> None:
        self.sessions = sessions
        self.clock = clock
        self.remote = remote
        self.code_ttl = code_ttl

    # ----------------------------------------------------------------- authorisation

    def check_redirect(self, session: Session, client: str | None, redirect_uri: str) -> None:
        """Raise :class:`InvalidRedirect` unless ``redirect_uri`` is registered exactly
        for ``client`` (then, and only then, errors may be sent back there)."""
        if client is None or redirect_uri not in redirects(session, client):
            raise InvalidRedirect("unknown client_id or unregistered redirect_uri")

    def check_request(self, session: Session, *, client: str, redirect_uri: str,
                      response_type: str, scope: str, code_challenge: str,
                      code_challenge_method: str, credential_id: str, hashes_: Sequence[str],
                      hash_algorithm_oid: str, num_signatures: int | None,
                      description: str, state: str) -> CodeRequest:
        """The request of step 1, checked (the redirect first: see
        :meth:`check_redirect`). Returns what the page shows and step 2 authorises."""
        self.check_redirect(session, client, redirect_uri)
        if response_type != "code":
            raise InvalidAuthorizationRequest("response_type must be code",
                                              error="unsupported_response_type")
        if scope != "credential":
            raise InvalidAuthorizationRequest("this flow grants the credential scope; the "
                                              "service scope is the API key",
                                              error="invalid_scope")
        if code_challenge_method != "S256" or not CHALLENGE.fullmatch(code_challenge or ""):
            raise InvalidAuthorizationRequest("PKCE is required: code_challenge (S256, 43 "
                                              "characters) and code_challenge_method=S256",
                                              error="invalid_request")
        if len(state) > 500 or len(description) > 500:
            raise InvalidAuthorizationRequest("state and description are at most 500 "
                                              "characters", error="invalid_request")
        try:
            name, size = parse_hash_algorithm(hash_algorithm_oid)
            digests = decode_hashes(list(hashes_), size, limit=self.remote.policy.max_batch)
            credential = self.remote.credential(session, credential_id)
            self.remote.contact(session, credential)  # hosted by the service
        except InvalidInput as exc:
            raise InvalidAuthorizationRequest(exc.detail, error="invalid_request") from exc
        except CredentialNotFound as exc:  # said to the client, not shown to the holder
            raise InvalidAuthorizationRequest("unknown credentialID",
                                              error="invalid_request") from exc
        count = len(digests) if num_signatures is None else num_signatures
        if count != len(digests) or len(set(digests)) != len(digests):
            raise InvalidAuthorizationRequest("numSignatures must equal the number of "
                                              "distinct hashes", error="invalid_request")
        return CodeRequest(client=client, redirect_uri=redirect_uri,
                           code_challenge=code_challenge, credential_id=credential.id,
                           hashes=tuple(digests), hash_algorithm=name, num_signatures=count,
                           description=description, state=state)

    def issue(self, request: CodeRequest, *, pin: str, otp: str, actor: str) -> str:
        """The holder's PIN and code (checked as in the explicit mode: code first, PIN on
        the token): a SAD for the platform, sealed under a fresh code that is returned."""
        granted = self.remote.authorize(
            request.credential_id, pin=pin, otp=otp, digests=request.hashes,
            hash_algorithm=request.hash_algorithm, purpose=PURPOSE_HASH,
            client=request.client, actor=actor, num_signatures=request.num_signatures,
            description=request.description)
        code = secrets.token_urlsafe(32)
        with transaction(self.sessions) as session:
            now = as_utc(self.clock.now())
            row = OAuthCode(id=str(uuid.uuid4()), code_hash=_sha256(code),
                            client=request.client, redirect_uri=request.redirect_uri,
                            code_challenge=request.code_challenge,
                            authorization_id=granted.authorization_id,
                            credential_id=request.credential_id,
                            num_signatures=request.num_signatures, status=CODE_OPEN,
                            created_at=now, expires_at=now + self.code_ttl)
            nonce = secrets.token_bytes(12)
            row.sad_box = nonce + AESGCM(_box_key(code, row.id)).encrypt(
                nonce, granted.sad.encode("ascii"), _box_aad(row))
            session.add(row)
            session.flush()
            record(session, self.clock, actor=actor, action="signing.oauth.code_issued",
                   object_type="credential", object_id=request.credential_id,
                   summary={"code": row.id, "client": request.client,
                            "authorization": granted.authorization_id,
                            "signatures": request.num_signatures})
        return code

    def exchange(self, code: str, *, client: str, redirect_uri: str, code_verifier: str,
                 actor: str) -> Token:
        """Step 3: the SAD for a valid code, once. Any failure on a known code spends it
        and its SAD."""
        if not isinstance(code, str) or not code or len(code) > 100:
            raise InvalidGrant("the code is missing")
        failure: InvalidGrant | None = None
        with transaction(self.sessions) as session:
            row = session.scalars(select(OAuthCode).where(
                OAuthCode.code_hash == _sha256(code)).with_for_update()).one_or_none()
            if row is None:
                raise InvalidGrant("unknown authorisation code")
            now = as_utc(self.clock.now())
            if row.status != CODE_OPEN or row.sad_box is None:
                failure = InvalidGrant("this code was used already: what it gave is revoked")
            elif as_utc(row.expires_at) <= now:
                failure = InvalidGrant("the code expired")
            elif not hmac.compare_digest(row.client, client):
                failure = InvalidGrant("the code was issued to another client")
            elif row.redirect_uri != redirect_uri:
                failure = InvalidGrant("redirect_uri differs from the authorisation request's")
            elif not VERIFIER.fullmatch(code_verifier or "") or \
                    not hmac.compare_digest(s256(code_verifier), row.code_challenge):
                failure = InvalidGrant("code_verifier does not match the code_challenge")
            if failure is not None:
                self._revoke(session, row, actor, failure.detail)
            else:
                box = row.sad_box or b""
                sad = AESGCM(_box_key(code, row.id)).decrypt(box[:12], box[12:],
                                                            _box_aad(row)).decode("ascii")
                authorization = session.get(SigningAuthorization, row.authorization_id)
                expires = as_utc(authorization.expires_at) if authorization else now
                row.status, row.used_at, row.sad_box = CODE_USED, now, None
                record(session, self.clock, actor=actor, action="signing.oauth.code_used",
                       object_type="credential", object_id=row.credential_id,
                       summary={"code": row.id, "client": client})
                return Token(sad, expires, row.credential_id, row.num_signatures)
        raise failure

    def _revoke(self, session: Session, row: OAuthCode, actor: str, reason: str) -> None:
        now = as_utc(self.clock.now())
        row.status, row.sad_box = CODE_USED, None
        row.used_at = row.used_at or now
        session.execute(update(SigningAuthorization).where(
            SigningAuthorization.id == row.authorization_id,
            SigningAuthorization.status == SAD_ACTIVE)
            .values(status=SAD_USED, used_at=now, pin_box=None)
            .execution_options(synchronize_session=False))
        record(session, self.clock, actor=actor, action="signing.oauth.code_refused",
               object_type="credential", object_id=row.credential_id,
               summary={"code": row.id, "client": row.client, "reason": reason})


__all__ = ["CODE_TTL", "CodeRequest", "InvalidAuthorizationRequest", "InvalidClient",
           "InvalidGrant", "InvalidRedirect", "OAuthCodes", "Token", "check_redirect_uri",
           "redirects", "register_redirect", "s256"]

"""Errors raised by the API layer itself (authentication, idempotency, HTTP protocol).

Like every package's errors they derive from the families of :mod:`core.errors`; the one
handler in :mod:`api.problems` turns them into RFC 9457 responses.
"""

from __future__ import annotations

from core.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    TawqiError,
    Unauthenticated,
)


class BadCredentials(Unauthenticated):
    """Wrong user name or password: the response never says which."""

    type = "bad-credentials"
    title = "Wrong user name or password"


class TokenInvalid(Unauthenticated):
    type = "token-invalid"
    title = "The bearer token or API key is not valid"


class NotPermitted(Forbidden):
    type = "not-permitted"
    title = "Not permitted"


class OutOfScope(Forbidden):
    """The role may do this, but not on this province, holder or credential."""

    type = "out-of-scope"
    title = "Outside your scope"


class UserNotFound(NotFound):
    type = "user-not-found"
    title = "User not found"


class UserExists(Conflict):
    type = "user-exists"
    title = "User name taken"


class ApiKeyNotFound(NotFound):
    type = "api-key-not-found"
    title = "API key not found"


class WeakPassword(InvalidInput):
    type = "weak-password"
    title = "Password too weak"


class InvalidAccount(InvalidInput):
    type = "invalid-account"
    title = "Invalid account"


class IdempotencyKeyReused(InvalidInput):
    """The same Idempotency-Key was sent with a different request."""

    type = "idempotency-key-reused"
    title = "Idempotency key reused for a different request"


class IdempotencyKeyRequired(InvalidInput):
    type = "idempotency-key-required"
    title = "Idempotency-Key header required"
    status = 428


class MalformedRequest(InvalidInput):
    """The body is not parseable (not JSON, bad encoding)."""

    type = "malformed-request"
    title = "Malformed request"
    status = 400


class CommuneNotFound(NotFound):
    type = "commune-not-found"
    title = "Commune not found"


class JsonTooDeep(MalformedRequest):
    """Arrays and objects nested deeper than the API accepts (``max_depth`` says how deep)."""

    type = "json-too-deep"
    title = "JSON nested too deeply"


class UnsupportedUpload(TawqiError):
    """A document sent in a media type the operation does not read."""

    type = "unsupported-media-type"
    title = "Unsupported media type"
    status = 415


class SecondFactorRequired(Unauthenticated):
    """The password was right, but the account also needs its second factor (TOTP)."""

    type = "second-factor-required"
    title = "Second factor required"


class SecondFactorFailed(Unauthenticated):
    """A login's TOTP (or recovery) code was wrong or already used; counted as a failed
    login."""

    type = "second-factor-failed"
    title = "Wrong second-factor code"


class SecondFactorNotEnrolled(Forbidden):
    """The account's role must sign in with a second factor, and it has none yet: it enrols
    on the web sign-in page first."""

    type = "second-factor-not-enrolled"
    title = "Second factor not enrolled"


class SecondFactorInvalid(InvalidAccount):
    """A TOTP code refused at enrolment (wrong, or already used)."""

    type = "second-factor-invalid"
    title = "Invalid authenticator code"

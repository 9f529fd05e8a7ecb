"""The one error model of Tawqi.

Every domain error derives from :class:`TawqiError`. It carries a stable ``type`` slug (the
API turns it into an RFC 9457 ``type`` URI), an HTTP-ish ``status`` and a human ``detail``;
``extras`` hold machine-readable facts (never a secret). Packages subclass the families below
in their own ``errors.py``; the API maps them once, at the edge.
"""

from __future__ import annotations

from typing import Any, ClassVar


class TawqiError(Exception):
    type: ClassVar[str] = "error"
    title: ClassVar[str] = "Error"
    status: ClassVar[int] = 500

    def __init__(self, detail: str, **extras: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extras = extras

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "title": self.title, "status": self.status,
                "detail": self.detail, **self.extras}


class InvalidInput(TawqiError):
    type = "invalid-input"
    title = "Invalid input"
    status = 422


class NotFound(TawqiError):
    type = "not-found"
    title = "Not found"
    status = 404


class Conflict(TawqiError):
    """The request is well-formed but the current state refuses it."""

    type = "conflict"
    title = "Conflict"
    status = 409


class Forbidden(TawqiError):
    type = "forbidden"
    title = "Forbidden"
    status = 403


class Unauthenticated(TawqiError):
    type = "unauthenticated"
    title = "Authentication required"
    status = 401


class RateLimited(TawqiError):
    type = "rate-limited"
    title = "Too many attempts"
    status = 429


class Unavailable(TawqiError):
    """A dependency (database, token module, provider) is out of reach; retrying may help."""

    type = "unavailable"
    title = "Service unavailable"
    status = 503


class ConfigurationError(TawqiError):
    type = "configuration"
    title = "Configuration error"
    status = 500

"""Errors of the token layer.

``hsm`` imports nothing of ours, so these classes do not derive from ``core.errors``; they
have the same duck-typed shape instead (class attributes ``type``, ``title``, ``status``;
instance attributes ``detail`` and ``extras``; ``to_dict()``), which is what the API maps to
RFC 9457 problem responses.

Invariant: no message, ``extras`` entry or ``repr`` ever contains a PIN or an SO PIN.
"""

from __future__ import annotations

from typing import Any, ClassVar


class HsmError(Exception):
    """Base class of every error raised by ``hsm``."""

    type: ClassVar[str] = "hsm-error"
    title: ClassVar[str] = "Token error"
    status: ClassVar[int] = 500

    def __init__(self, detail: str, **extras: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extras = extras

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "title": self.title, "status": self.status,
                "detail": self.detail, **self.extras}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.detail!r}, extras={self.extras!r})"


class ModuleUnavailable(HsmError):
    """The PKCS#11 module cannot be loaded or initialised; retrying later may help."""

    type = "hsm-module-unavailable"
    title = "Token module unavailable"
    status = 503


class TokenNotFound(HsmError):
    type = "token-not-found"
    title = "Token not found"
    status = 404


class KeyNotFound(HsmError):
    type = "key-not-found"
    title = "Key not found"
    status = 404


class TokenAlreadyExists(HsmError):
    type = "token-already-exists"
    title = "Token already exists"
    status = 409


class KeyAlreadyExists(HsmError):
    type = "key-already-exists"
    title = "Key already exists"
    status = 409


class NoFreeSlot(HsmError):
    """The module offers no uninitialised token to initialise."""

    type = "hsm-no-free-slot"
    title = "No free token slot"
    status = 503


class PinIncorrect(HsmError):
    """Wrong PIN; ``extras['attempts_left']`` says how many tries remain before the lock."""

    type = "pin-incorrect"
    title = "Incorrect PIN"
    status = 403


class PinLocked(HsmError):
    """Too many wrong PINs (counted by the service) or the module reports the PIN locked."""

    type = "pin-locked"
    title = "PIN locked"
    status = 423


class PinPolicyViolation(HsmError):
    type = "pin-policy"
    title = "PIN does not satisfy the policy"
    status = 422


class LoginRequired(HsmError):
    """A key object was used after its token was logged out (wrong PIN tried, reset, close)."""

    type = "login-required"
    title = "Token login required"
    status = 401


class InvalidRequest(HsmError):
    """A caller passed something the token layer cannot do (bad label, unknown key type)."""

    type = "hsm-invalid-request"
    title = "Invalid token request"
    status = 422


class OperationRefused(HsmError):
    """The operation is not allowed on a token key (e.g. reading private bytes)."""

    type = "hsm-operation-refused"
    title = "Operation refused"
    status = 403


class DecryptionFailed(HsmError):
    """An encrypted blob did not authenticate (wrong key, wrong AAD or tampered)."""

    type = "hsm-decryption-failed"
    title = "Decryption failed"
    status = 422

"""Errors of the certificate authority (see core.errors for the model).

Errors raised by the token layer (``hsm.errors.HsmError``) are not wrapped when they only
say something about a token (wrong PIN, unknown label): they already carry the duck-typed
``type``/``status``/``detail`` the API maps. pki wraps them when the failure means something
about the CA itself (:class:`AuthorityUnavailable`).
"""

from __future__ import annotations

from core.errors import Conflict, InvalidInput, NotFound, Unavailable


class InvalidHolder(InvalidInput):
    """A holder identity that cannot go into a certificate (bad CIN, empty name…)."""

    type = "pki-invalid-holder"
    title = "Invalid certificate holder"


class InvalidKeyType(InvalidInput):
    type = "pki-invalid-key-type"
    title = "Unsupported key type"


class InvalidRevocationReason(InvalidInput):
    type = "pki-invalid-revocation-reason"
    title = "Invalid revocation reason"


class MalformedRequest(InvalidInput):
    """An OCSP or time-stamp request that does not parse."""

    type = "pki-malformed-request"
    title = "Malformed request"


class AuthorityNotInitialised(NotFound):
    """``tawqi ca init`` has not been run (or the issuing CA is missing)."""

    type = "pki-authority-not-initialised"
    title = "Certificate authority not initialised"


class AuthorityAlreadyInitialised(Conflict):
    type = "pki-authority-already-initialised"
    title = "Certificate authority already initialised"


class AuthorityUnavailable(Unavailable):
    """The CA's key or certificate cannot be used right now (token missing, wrong PIN…)."""

    type = "pki-authority-unavailable"
    title = "Certificate authority unavailable"


class AuthorityExpired(Conflict):
    """The CA (or the OCSP/TSA certificate) is outside its validity: nothing can be signed."""

    type = "pki-authority-expired"
    title = "Certificate authority expired"


class CertificateNotFound(NotFound):
    type = "pki-certificate-not-found"
    title = "Certificate not found"


class InvalidTransition(Conflict):
    """The certificate's status forbids the change (revoking a revoked certificate,
    releasing one that is not suspended, signing a prepared issuance twice…)."""

    type = "pki-invalid-transition"
    title = "Certificate status forbids this change"


class SerialCollision(Conflict):
    """Drawing a fresh random serial failed repeatedly (practically impossible)."""

    type = "pki-serial-collision"
    title = "Serial number collision"


class BulkRevocationRefused(InvalidInput):
    """A bulk revocation list names serials that cannot be revoked (unknown, of another CA,
    never issued, or too many): nothing was changed. ``problems`` lists each one."""

    type = "pki-bulk-revocation-refused"
    title = "Bulk revocation refused"

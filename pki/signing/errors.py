"""Errors of signing: remote signing (CSC credentials, codes, SADs) and PAdES documents.

Each carries a stable ``type`` slug (the API's problem type) and data, never a secret.
"""

from __future__ import annotations

from core.errors import Conflict, Forbidden, InvalidInput, NotFound, Unavailable

# --------------------------------------------------------------------------- remote signing


class CredentialNotFound(NotFound):
    type = "signing-credential-not-found"
    title = "Signing credential not found"


class CredentialUnusable(Conflict):
    """The certificate is suspended, revoked, expired, not yet valid, or its holder is not
    ready to sign (terms, first PIN change)."""

    type = "signing-credential-unusable"
    title = "This credential cannot sign"


class InvalidSigningRequest(InvalidInput):
    type = "signing-invalid-request"
    title = "Invalid signing request"


class BatchTooLarge(InvalidInput):
    type = "signing-batch-too-large"
    title = "Too many hashes in one request"


class OtpInvalid(Forbidden):
    type = "signing-otp-invalid"
    title = "Wrong one-time code"


class OtpClosed(Forbidden):
    """No open code: never sent, expired, used, or closed after too many wrong guesses."""

    type = "signing-otp-closed"
    title = "No valid one-time code"


class SadInvalid(Forbidden):
    """The SAD is unknown, expired, used, or belongs to another client or credential."""

    type = "signing-sad-invalid"
    title = "Invalid signature activation data"


class SadMismatch(Forbidden):
    """The SAD is valid but authorises other hashes (or another document)."""

    type = "signing-sad-mismatch"
    title = "The SAD does not authorise this"


class SigningUnavailable(Unavailable):
    type = "signing-unavailable"
    title = "Signing unavailable"


# --------------------------------------------------------------------------- PAdES documents


class InvalidDocument(InvalidInput):
    """The upload is not a PDF we can read (or sign): broken, encrypted, empty."""

    type = "pki-invalid-document"
    title = "Invalid PDF document"


class DocumentTooLarge(InvalidInput):
    type = "pki-document-too-large"
    title = "Document too large"
    status = 413


class InvalidPlacement(InvalidInput):
    type = "pki-invalid-placement"
    title = "Invalid signature placement"


class DocumentLocked(Conflict):
    """The document's certification (DocMDP) forbids adding signatures."""

    type = "pki-document-locked"
    title = "The document forbids new signatures"


class SigningFailed(Conflict):
    """pyHanko refused to sign (for B-LT: the chain or the revocation data did not
    validate). Nothing was signed."""

    type = "pki-signing-failed"
    title = "Signing failed"


class TimeStampUnavailable(Unavailable):
    type = "pki-timestamp-unavailable"
    title = "Time-stamping authority unavailable"


__all__ = ["BatchTooLarge", "CredentialNotFound", "CredentialUnusable", "DocumentLocked",
           "DocumentTooLarge", "InvalidDocument", "InvalidPlacement", "InvalidSigningRequest",
           "OtpClosed", "OtpInvalid", "SadInvalid", "SadMismatch", "SigningFailed",
           "SigningUnavailable", "TimeStampUnavailable"]

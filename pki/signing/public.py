"""The public status page of a stamped signature (the stamp's QR code leads there): what
the stamp says, when it was signed, and the certificate's status today."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from core.clock import as_utc
from pki.models import STATUS_REVOKED, STATUS_SUSPENDED, CertificateRecord
from pki.signing.models import SignatureRecord

#: What :func:`secrets.token_urlsafe` (16 bytes) makes; anything else is not looked up.
PUBLIC_ID = re.compile(r"^[A-Za-z0-9_-]{16,32}$")


@dataclass(frozen=True)
class SignatureStatus:
    public_id: str
    serial: str
    signed_at: datetime
    name_fr: str
    name_ar: str
    title_fr: str
    title_ar: str
    organisation_fr: str
    organisation_ar: str
    document_name: str | None
    #: valid | suspended | revoked | expired, today.
    certificate_status: str
    #: When it was suspended or revoked (None otherwise).
    status_since: datetime | None


def signature_status(session: Session, public_id: str, at: datetime
                     ) -> SignatureStatus | None:
    """The status page of ``public_id`` at ``at``, or None if there is no such signature."""
    if not PUBLIC_ID.fullmatch(public_id):
        return None
    row = session.get(SignatureRecord, public_id)
    if row is None:
        return None
    cert = session.get(CertificateRecord, row.certificate_id)
    since = None
    if cert is None:  # pragma: no cover - a foreign key keeps it
        status = "revoked"
    elif cert.status == STATUS_REVOKED:
        status, since = "revoked", cert.revoked_at
    elif cert.status == STATUS_SUSPENDED:
        status, since = "suspended", cert.suspended_at
    elif as_utc(cert.not_after) < at:
        status = "expired"
    else:
        status = "valid"
    return SignatureStatus(
        public_id=row.public_id, serial=row.serial, signed_at=as_utc(row.signed_at),
        name_fr=row.name_fr, name_ar=row.name_ar, title_fr=row.title_fr,
        title_ar=row.title_ar, organisation_fr=row.organisation_fr,
        organisation_ar=row.organisation_ar, document_name=row.document_name,
        certificate_status=status, status_since=as_utc(since) if since else None)


__all__ = ["PUBLIC_ID", "SignatureStatus", "signature_status"]

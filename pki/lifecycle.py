"""Status changes and queries: suspend (certificateHold), release, revoke; status, list.

Every change, in the caller's transaction: the row is locked and checked, changed, audited,
its OCSP response re-signed and a new CRL published. Allowed transitions::

    issued    --suspend--> suspended --release--> issued
    issued    --revoke---> revoked (final)
    suspended --revoke---> revoked (final)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.audit import record as audit
from core.clock import Clock, as_utc
from pki import crl, ocsp, reasons
from pki.authority import Authority, normalise_serial
from pki.errors import CertificateNotFound, InvalidTransition
from pki.models import (
    STATUS_ISSUED,
    STATUS_REVOKED,
    STATUS_SUSPENDED,
    CertificateRecord,
)


@dataclass(frozen=True)
class CertificateStatus:
    """A certificate as the registry knows it. ``status`` is the stored status; use
    :meth:`valid_at` for "would a relying party accept it at this instant"."""

    id: int
    serial: str
    profile: str
    status: str
    subject: str
    cin: str | None
    organization: str | None
    token_label: str
    not_before: datetime
    not_after: datetime
    revoked_at: datetime | None
    revocation_reason: str | None
    suspended_at: datetime | None
    fingerprint: str | None
    replaces_id: int | None

    def valid_at(self, at: datetime) -> bool:
        return self.status == STATUS_ISSUED and self.not_before <= at <= self.not_after

    def as_dict(self) -> dict[str, object]:
        return {k: (v.isoformat() if isinstance(v, datetime) else v)
                for k, v in self.__dict__.items()}


def _status(row: CertificateRecord) -> CertificateStatus:
    def utc(value: datetime | None) -> datetime | None:
        return as_utc(value) if value is not None else None

    return CertificateStatus(row.id, row.serial, row.profile, row.status, row.subject,
                             row.cin, row.organization, row.token_label,
                             as_utc(row.not_before), as_utc(row.not_after),
                             utc(row.revoked_at), row.revocation_reason,
                             utc(row.suspended_at), row.fingerprint, row.replaces_id)


def _locked(session: Session, authority: Authority, serial: str) -> CertificateRecord:
    key = normalise_serial(serial)
    row = session.scalars(select(CertificateRecord).where(CertificateRecord.serial == key)
                          .with_for_update()).one_or_none()
    if row is None:
        raise CertificateNotFound("no certificate has this serial", serial=key)
    if row.authority_id != authority.id:
        raise InvalidTransition("this certificate was issued by another CA; load that CA",
                                serial=key)
    return row


def _after_change(session: Session, clock: Clock, authority: Authority,
                  row: CertificateRecord, *, actor: str) -> CertificateStatus:
    session.flush()
    if authority.ocsp_signer is not None:
        ocsp.presign(session, clock, authority, row)
    crl.publish_crl(session, clock, authority, actor=actor)
    return _status(row)


def revoke(session: Session, clock: Clock, authority: Authority, serial: str, reason: str,
           *, actor: str) -> CertificateStatus:
    """Revoke for good, with an RFC 5280 reason (``affiliationChanged`` after elections,
    ``keyCompromise``, ``cessationOfOperation``, ``superseded``, ``privilegeWithdrawn``,
    ``unspecified``). A suspended certificate may be revoked; a revoked one may not."""
    name = reasons.canonical(reason)
    row = _locked(session, authority, serial)
    if row.status not in (STATUS_ISSUED, STATUS_SUSPENDED):
        raise InvalidTransition(f"a {row.status} certificate cannot be revoked",
                                serial=row.serial, status=row.status)
    now = as_utc(clock.now()).replace(microsecond=0)
    previous = row.status
    row.status = STATUS_REVOKED
    row.revoked_at = now
    row.revocation_reason = name
    row.updated_at = now
    audit(session, clock, actor=actor, action="certificate.revoked",
          object_type="certificate", object_id=row.serial,
          summary={"reason": name, "previous": previous})
    return _after_change(session, clock, authority, row, actor=actor)


def suspend(session: Session, clock: Clock, authority: Authority, serial: str, *,
            actor: str, note: str = "") -> CertificateStatus:
    """Put an issued certificate on hold (CRL/OCSP reason certificateHold)."""
    row = _locked(session, authority, serial)
    if row.status != STATUS_ISSUED:
        raise InvalidTransition(f"a {row.status} certificate cannot be suspended",
                                serial=row.serial, status=row.status)
    now = as_utc(clock.now()).replace(microsecond=0)
    row.status = STATUS_SUSPENDED
    row.suspended_at = now
    row.updated_at = now
    audit(session, clock, actor=actor, action="certificate.suspended",
          object_type="certificate", object_id=row.serial, summary={"note": note[:200]})
    return _after_change(session, clock, authority, row, actor=actor)


def release(session: Session, clock: Clock, authority: Authority, serial: str, *,
            actor: str, note: str = "") -> CertificateStatus:
    """Lift a suspension: the certificate is good again and leaves the next CRL."""
    row = _locked(session, authority, serial)
    if row.status != STATUS_SUSPENDED:
        raise InvalidTransition(f"a {row.status} certificate is not suspended",
                                serial=row.serial, status=row.status)
    now = as_utc(clock.now()).replace(microsecond=0)
    row.status = STATUS_ISSUED
    row.suspended_at = None
    row.updated_at = now
    audit(session, clock, actor=actor, action="certificate.released",
          object_type="certificate", object_id=row.serial, summary={"note": note[:200]})
    return _after_change(session, clock, authority, row, actor=actor)


def certificate_status(session: Session, serial: str) -> CertificateStatus:
    """The registry's view of one certificate (no lock, no write)."""
    key = normalise_serial(serial)
    row = session.scalars(select(CertificateRecord)
                          .where(CertificateRecord.serial == key)).one_or_none()
    if row is None:
        raise CertificateNotFound("no certificate has this serial", serial=key)
    return _status(row)


def certificate_der(session: Session, serial: str) -> bytes:
    """The signed certificate, DER. Raises if the serial is unknown or not signed."""
    key = normalise_serial(serial)
    row = session.scalars(select(CertificateRecord)
                          .where(CertificateRecord.serial == key)).one_or_none()
    if row is None or row.der is None:
        raise CertificateNotFound("no signed certificate has this serial", serial=key)
    return row.der


def list_certificates(session: Session, *, status: str | None = None,
                      profile: str | None = None, cin: str | None = None,
                      limit: int = 200, offset: int = 0) -> list[CertificateStatus]:
    query = (select(CertificateRecord).order_by(CertificateRecord.id.desc()).limit(limit)
             .offset(offset))
    if status:
        query = query.where(CertificateRecord.status == status)
    if profile:
        query = query.where(CertificateRecord.profile == profile)
    if cin:
        query = query.where(CertificateRecord.cin == cin.strip().upper())
    return [_status(row) for row in session.scalars(query)]

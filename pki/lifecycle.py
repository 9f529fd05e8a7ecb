"""Status changes and queries: suspend (certificateHold), release, revoke; status, list.

Every change, in the caller's transaction: the row is locked and checked, changed, audited,
its OCSP response re-signed and a new CRL published. Allowed transitions::

    issued    --suspend--> suspended --release--> issued
    issued    --revoke---> revoked (final)
    suspended --revoke---> revoked (final)

:func:`revoke_many` revokes a list at once (after an election): each certificate audited
and its OCSP answer re-signed, then ONE CRL at the end.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.audit import record as audit
from core.clock import Clock, as_utc
from pki import crl, ocsp, reasons
from pki.authority import Authority, normalise_serial
from pki.errors import BulkRevocationRefused, CertificateNotFound, InvalidTransition
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


#: The most serials one bulk revocation accepts (the nation's presidents are 1,503).
BULK_LIMIT = 20_000


@dataclass(frozen=True)
class BulkRevocation:
    """What :func:`revoke_many` did (or, with ``dry_run``, would do).

    ``revoked``: revoked by this run. ``skipped``: already revoked with the same reason
    (e.g. by an interrupted run being resumed). ``other_reason``: already revoked with
    another reason, left as they are. ``crl_number``: the one CRL published (None on a dry
    run or when nothing changed)."""

    reason: str
    dry_run: bool
    revoked: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    other_reason: list[tuple[str, str]] = field(default_factory=list)
    crl_number: int | None = None

    @property
    def total(self) -> int:
        return len(self.revoked) + len(self.skipped) + len(self.other_reason)

    def as_dict(self) -> dict[str, object]:
        return {"reason": self.reason, "dry_run": self.dry_run, "total": self.total,
                "revoked": self.revoked, "skipped": self.skipped,
                "other_reason": [{"serial": s, "reason": r} for s, r in self.other_reason],
                "crl_number": self.crl_number}


def _bulk_serials(serials: Iterable[str]) -> tuple[list[str], list[dict[str, str]]]:
    keys: list[str] = []
    seen: set[str] = set()
    problems: list[dict[str, str]] = []
    for raw in serials:
        text = (raw or "").strip()
        if not text:
            continue
        try:
            key = normalise_serial(text)
        except CertificateNotFound:
            problems.append({"serial": text[:80], "problem": "not a serial number"})
            continue
        if key not in seen:
            seen.add(key)
            keys.append(key)
    return keys, problems


def revoke_many(session: Session, clock: Clock, authority: Authority,
                serials: Iterable[str], reason: str, *, actor: str, dry_run: bool = False,
                progress: Callable[[int, int], None] | None = None,
                checkpoint: Callable[[], None] | None = None,
                checkpoint_every: int = 200) -> BulkRevocation:
    """Revoke many certificates as one operation, with one RFC 5280 ``reason``.

    Every serial is checked first; if one is unknown, of another CA or not an issued or
    suspended certificate, :class:`BulkRevocationRefused` lists them all and nothing
    changes. Each certificate is then revoked, audited and its OCSP answer re-signed; ONE
    CRL is published at the end. Duplicates count once.

    Resumable: a certificate already revoked with the same reason is skipped (and counted),
    so running the same list again after an interruption finishes the work. ``checkpoint``
    (e.g. the caller's commit) is called every ``checkpoint_every`` revocations, so an
    interrupted run keeps what it did; the CRL follows at the end of the run that
    completes. ``dry_run`` checks and reports, and changes nothing. ``progress(done,
    total)`` is called as the work advances."""
    name = reasons.canonical(reason)
    keys, problems = _bulk_serials(serials)
    if len(keys) > BULK_LIMIT:
        raise BulkRevocationRefused(f"at most {BULK_LIMIT} serials per bulk revocation",
                                    count=len(keys), limit=BULK_LIMIT)
    rows: dict[str, CertificateRecord] = {}
    for start in range(0, len(keys), 500):
        chunk = keys[start:start + 500]
        query = select(CertificateRecord).where(CertificateRecord.serial.in_(chunk))
        if not dry_run:
            query = query.with_for_update()
        rows.update((row.serial, row) for row in session.scalars(query))
    result = BulkRevocation(reason=name, dry_run=dry_run)
    todo: list[CertificateRecord] = []
    for key in keys:
        row = rows.get(key)
        if row is None:
            problems.append({"serial": key, "problem": "unknown serial"})
        elif row.authority_id != authority.id:
            problems.append({"serial": key, "problem": "issued by another CA"})
        elif row.status == STATUS_REVOKED:
            if row.revocation_reason == name:
                result.skipped.append(key)
            else:
                result.other_reason.append((key, row.revocation_reason or "unspecified"))
        elif row.status in (STATUS_ISSUED, STATUS_SUSPENDED):
            todo.append(row)
        else:
            problems.append({"serial": key, "problem": f"a {row.status} certificate "
                                                       "cannot be revoked"})
    if problems:
        raise BulkRevocationRefused(
            f"{len(problems)} of the serials cannot be revoked; nothing was changed",
            problems=problems[:200], count=len(problems))
    total = len(keys)
    done = len(result.skipped) + len(result.other_reason)
    if progress is not None:
        progress(done, total)
    if dry_run:
        result.revoked.extend(row.serial for row in todo)
        return result
    now = as_utc(clock.now()).replace(microsecond=0)
    for row in todo:
        previous = row.status
        row.status = STATUS_REVOKED
        row.revoked_at = now
        row.revocation_reason = name
        row.updated_at = now
        audit(session, clock, actor=actor, action="certificate.revoked",
              object_type="certificate", object_id=row.serial,
              summary={"reason": name, "previous": previous, "bulk": True})
        if authority.ocsp_signer is not None:
            ocsp.presign(session, clock, authority, row)
        result.revoked.append(row.serial)
        done += 1
        if progress is not None:
            progress(done, total)
        if checkpoint is not None and len(result.revoked) % checkpoint_every == 0:
            session.flush()
            checkpoint()
    session.flush()
    if result.revoked or result.skipped:
        # Skipped ones may come from an interrupted run whose CRL was never published.
        published = crl.publish_crl(session, clock, authority, actor=actor, trigger="bulk")
        result = BulkRevocation(name, False, result.revoked, result.skipped,
                                result.other_reason, published.number)
    audit(session, clock, actor=actor, action="certificate.bulk_revoked",
          object_type="crl", object_id=str(result.crl_number or ""),
          summary={"reason": name, "revoked": len(result.revoked),
                   "skipped": len(result.skipped), "other_reason": len(result.other_reason)})
    return result


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

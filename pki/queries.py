"""Reading the registry for lists, reports and metrics: how many certificates match, one
page of them, how many per profile and status, our CA certificates. Read-only; every change
goes through :mod:`pki.lifecycle` and :mod:`pki.issuance`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from core.listing import Page, check_window
from pki import lifecycle
from pki.models import (
    STATUS_ISSUED,
    AuthorityRecord,
    CertificateRecord,
    CrlRecord,
    OcspRecord,
)


def _filtered(query: Select, *, status: str | None, profile: str | None,
              cin: str | None) -> Select:
    # The filters of lifecycle.list_certificates, applied the same way.
    if status:
        query = query.where(CertificateRecord.status == status)
    if profile:
        query = query.where(CertificateRecord.profile == profile)
    if cin:
        query = query.where(CertificateRecord.cin == cin.strip().upper())
    return query


def count_certificates(session: Session, *, status: str | None = None,
                       profile: str | None = None, cin: str | None = None) -> int:
    """How many certificates match every filter given (``cin`` in any case)."""
    query = _filtered(select(func.count(CertificateRecord.id)), status=status,
                      profile=profile, cin=cin)
    return int(session.scalar(query) or 0)


def certificate_page(session: Session, *, status: str | None = None,
                     profile: str | None = None, cin: str | None = None, limit: int = 50,
                     offset: int = 0) -> Page[lifecycle.CertificateStatus]:
    """One window of the registry, newest first, and how many certificates match."""
    check_window(limit, offset)
    items = lifecycle.list_certificates(session, status=status, profile=profile, cin=cin,
                                        limit=limit, offset=offset)
    if offset == 0 and len(items) < limit:
        return Page(items, len(items))
    return Page(items, count_certificates(session, status=status, profile=profile, cin=cin))


def counts_by_profile_and_status(session: Session) -> dict[tuple[str, str], int]:
    """``{(profile, status): count}`` over the whole registry (the metrics gauge)."""
    rows = session.execute(select(CertificateRecord.profile, CertificateRecord.status,
                                  func.count(CertificateRecord.id))
                           .group_by(CertificateRecord.profile, CertificateRecord.status))
    return {(profile, status): int(count) for profile, status, count in rows}


def authorities(session: Session) -> list[AuthorityRecord]:
    """Our CA certificates (roots and issuing CAs, current and retired), oldest first."""
    return list(session.scalars(select(AuthorityRecord).order_by(AuthorityRecord.id)))


def crl_next_updates(session: Session) -> dict[int, datetime]:
    """Each CA's newest CRL's nextUpdate, by authority id."""
    return {authority_id: _aware(next_update) for authority_id, next_update in session.execute(
        select(CrlRecord.authority_id, func.max(CrlRecord.next_update))
        .group_by(CrlRecord.authority_id))}


def count_expiring(session: Session, now: datetime, days: int) -> int:
    """Issued certificates whose notAfter falls within ``days`` from ``now``."""
    return session.scalar(select(func.count(CertificateRecord.id)).where(
        CertificateRecord.status == STATUS_ISSUED, CertificateRecord.not_after > now,
        CertificateRecord.not_after <= now + timedelta(days=days))) or 0


def stale_revocation_data(session: Session, now: datetime) -> list[str]:
    """What a relying party would find out of date now: an active CA whose newest CRL is
    past its nextUpdate (or that has none), and pre-signed OCSP answers past theirs for
    certificates still within their validity. Empty when everything is fresh."""
    problems = []
    latest = crl_next_updates(session)
    for authority_id, kind in session.execute(select(AuthorityRecord.id, AuthorityRecord.kind)
                                              .where(AuthorityRecord.active.is_(True))):
        next_update = latest.get(authority_id)
        if next_update is None or next_update <= now:
            problems.append(f"the {kind} CA {authority_id} has no current CRL")
    stale = session.scalar(select(func.count(OcspRecord.id)).join(
        CertificateRecord, CertificateRecord.serial == OcspRecord.serial).where(
        OcspRecord.next_update <= now, CertificateRecord.not_after > now)) or 0
    if stale:
        problems.append(f"{stale} OCSP answer(s) past their nextUpdate")
    return problems


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo else at.replace(tzinfo=UTC)

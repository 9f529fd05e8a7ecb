"""Reading the registry for lists, reports and metrics: how many certificates match, one
page of them, how many per profile and status, our CA certificates. Read-only; every change
goes through :mod:`pki.lifecycle` and :mod:`pki.issuance`.
"""

from __future__ import annotations

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from core.listing import Page, check_window
from pki import lifecycle
from pki.models import AuthorityRecord, CertificateRecord


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

"""Scheduled notices: certificates about to expire, tokens waiting to be handed over.

Both are run by the periodic jobs of ``tawqi worker`` (``api/jobs.py``) and by hand
(``tawqi jobs run NAME``). Each call decides from the database what is due, so running it
twice, or from two workers at once, queues nothing twice: expiry warnings are claimed in
``delivery_expiry_warning`` (unique per certificate and threshold) and every outbox row has
a dedupe key.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, exists, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, aliased

from core.audit import record
from core.clock import Clock, as_utc
from core.db import is_postgres
from delivery import notices
from delivery.batches import overdue_handovers
from delivery.contacts import active_contact
from delivery.models import ExpiryWarning, Holder, OutboxMessage
from pki.models import PROFILE_HOLDER, STATUS_ISSUED, CertificateRecord
from quotas.models import Province

log = logging.getLogger("tawqi.delivery.reminders")

DEFAULT_EXPIRY_THRESHOLDS = (60, 30, 7)


@dataclass(frozen=True)
class ExpiryReport:
    certificates: int  # certificates warned by this call
    messages: int


def _due(session: Session, now: datetime, lower_days: int, days: int
         ) -> list[tuple[CertificateRecord, Holder]]:
    """Issued holder certificates ending in (now + lower_days, now + days], with a
    registered holder, not replaced by a later one, not yet warned at ``days`` or closer."""
    newer = aliased(CertificateRecord)
    return [(row[0], row[1]) for row in session.execute(
        select(CertificateRecord, Holder)
        .join(Holder, Holder.cin == CertificateRecord.cin)
        .where(CertificateRecord.profile == PROFILE_HOLDER,
               CertificateRecord.status == STATUS_ISSUED,
               CertificateRecord.not_after > now + timedelta(days=lower_days),
               CertificateRecord.not_after <= now + timedelta(days=days),
               ~exists().where(and_(ExpiryWarning.certificate_serial == CertificateRecord.serial,
                                    ExpiryWarning.threshold_days <= days)),
               ~exists().where(and_(newer.cin == CertificateRecord.cin,
                                    newer.profile == PROFILE_HOLDER,
                                    newer.status == STATUS_ISSUED,
                                    newer.not_after > CertificateRecord.not_after)))
        .order_by(CertificateRecord.not_after, CertificateRecord.id))]


def send_expiry_warnings(session: Session, clock: Clock, *, thresholds: tuple[int, ...],
                         actor: str) -> ExpiryReport:
    """Warn the holder and the province's contact of every issued holder certificate whose
    ``notAfter`` is within a threshold (days), once per certificate and threshold.

    Only the tightest threshold crossed is sent (a certificate first seen 20 days before
    its end gets the 30-day warning, not also the 60-day one). A certificate the holder has
    already replaced (a later issued certificate with the same CIN) is not warned about.
    Holders are matched by CIN; a certificate without a registered holder has no one to warn.
    Certificates already warned are left out by the query, so a run with nothing new costs
    one query per threshold.
    """
    if not thresholds or min(thresholds) < 1:
        raise ValueError("expiry thresholds are positive numbers of days")
    now = as_utc(clock.now())
    insert = pg_insert if is_postgres(session) else sqlite_insert
    warned = messages = 0
    bands = sorted(set(thresholds))
    for lower, days in zip([0, *bands], bands, strict=False):
        for certificate, holder in _due(session, now, lower, days):
            not_after = as_utc(certificate.not_after)
            claimed = session.execute(insert(ExpiryWarning).values(
                certificate_serial=certificate.serial, threshold_days=days,
                holder_id=holder.id, not_after=not_after, queued_at=now,
            ).on_conflict_do_nothing().returning(ExpiryWarning.id)).scalar_one_or_none()
            if claimed is None:
                continue  # another worker claimed it since our query
            days_left = max(1, math.ceil((not_after - now) / timedelta(days=1)))
            messages += notices.enqueue_expiry_warning(
                session, clock, holder=holder,
                contact=active_contact(session, holder.province_code),
                serial=certificate.serial, threshold_days=days, not_after=not_after,
                days_left=days_left)
            record(session, clock, actor=actor, action="delivery.expiry.warned",
                   object_type="certificate", object_id=certificate.serial,
                   summary={"holder_id": holder.id, "threshold_days": days,
                            "not_after": not_after.isoformat()})
            warned += 1
    session.flush()
    return ExpiryReport(warned, messages)


def send_handover_reminders(session: Session, clock: Clock, *, overdue_days: int,
                            actor: str) -> int:
    """Email each province's active contact the tokens received more than
    ``overdue_days`` ago and not yet handed over: at most one email per contact and day.
    Returns how many contacts were reminded by this call."""
    overdue = overdue_handovers(session, clock, overdue_days=overdue_days, limit=None).items
    by_province: dict[str, list[str]] = {}
    for token in overdue:
        by_province.setdefault(token.province_code, []).append(
            f"- {token.holder_name} ({token.cin}), reçu le / استلم بتاريخ "
            f"{token.received_at:%Y-%m-%d}, demande / طلب {token.request_id}")
    day = f"{as_utc(clock.now()):%Y-%m-%d}"
    reminded = 0
    for province_code, lines in sorted(by_province.items()):
        contact = active_contact(session, province_code)
        if contact is None:
            log.warning("no active contact in %s to remind of %d token(s)", province_code,
                        len(lines))
            continue
        before = session.scalar(select(OutboxMessage.id).where(
            OutboxMessage.dedupe_key == f"handover.reminder:{contact.id}:{day}"))
        notices.enqueue_handover_reminder(
            session, clock, contact=contact, province=session.get_one(Province, province_code),
            lines=lines, overdue_days=overdue_days, day=day)
        if before is None:
            reminded += 1
            record(session, clock, actor=actor, action="delivery.handover.reminded",
                   object_type="contact", object_id=contact.id,
                   summary={"province": province_code, "tokens": len(lines)})
    return reminded

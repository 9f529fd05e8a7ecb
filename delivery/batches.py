"""Courier batches: a province's personalised device tokens, in one Amana parcel to its
contact, then handed over one by one.

``prepare_batch`` gathers the province's personalised device tokens not yet in a batch into
its open (``preparing``) batch; ``dispatch_batch`` records the tracking number and ships
them; ``receive_batch`` records the contact's receipt; ``record_handover`` records each
hand-over to a holder. The PIN never travels in the parcel: it goes to the holder by SMS and
email at hand-over (default) or at dispatch (``TAWQI_PIN_SEND_AT``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.audit import record
from core.clock import Clock, as_utc
from core.listing import Page, rows_page, scalars_page
from delivery import notices
from delivery.contacts import active_contact, require_active_contact
from delivery.errors import BatchNotFound, BatchStateError, ContactNotFound, InvalidTracking
from delivery.holders import get_holder
from delivery.models import (
    BATCH_DISPATCHED,
    BATCH_PREPARING,
    BATCH_RECEIVED,
    DELIVERED,
    DEVICE,
    PERSONALISED,
    CertificateRequest,
    CourierBatch,
    Holder,
)
from delivery.policy import PIN_AT_DISPATCH, PIN_AT_HANDOVER, DeliveryPolicy
from delivery.requests import get_request, move
from delivery.validation import normalise_tracking, require_text


def get_batch(session: Session, batch_id: int, *, lock: bool = False) -> CourierBatch:
    query = select(CourierBatch).where(CourierBatch.id == batch_id)
    if lock:
        query = query.with_for_update()
    batch = session.scalar(query)
    if batch is None:
        raise BatchNotFound(f"no courier batch {batch_id}", batch_id=batch_id)
    return batch


def batch_requests(session: Session, batch_id: int) -> list[CertificateRequest]:
    return list(session.scalars(select(CertificateRequest)
                                .where(CertificateRequest.batch_id == batch_id)
                                .order_by(CertificateRequest.id)))


def request_ids_by_batch(session: Session, batch_ids: list[int]) -> dict[int, list[int]]:
    """The requests of each batch (one query for a whole list of batches)."""
    found: dict[int, list[int]] = {batch_id: [] for batch_id in batch_ids}
    if batch_ids:
        for request_id, batch_id in session.execute(
                select(CertificateRequest.id, CertificateRequest.batch_id)
                .where(CertificateRequest.batch_id.in_(batch_ids))
                .order_by(CertificateRequest.id)):
            if batch_id is not None:
                found[batch_id].append(request_id)
    return found


def list_batches(session: Session, *, province_code: str | None = None,
                 status: str | None = None, limit: int | None = None,
                 offset: int = 0) -> Page[CourierBatch]:
    """Courier batches matching every filter given, oldest first."""
    query = select(CourierBatch).order_by(CourierBatch.id)
    if province_code:
        query = query.where(CourierBatch.province_code == province_code)
    if status:
        query = query.where(CourierBatch.status == status)
    return scalars_page(session, query, limit=limit, offset=offset)


def prepare_batch(session: Session, clock: Clock, province_code: str, *,
                  actor: str) -> CourierBatch:
    """Put every personalised device token of the province that is not in a batch yet into
    the province's open batch (created if needed). Refuses when there is nothing to send."""
    contact = active_contact(session, province_code)
    if contact is None:
        raise ContactNotFound(f"province {province_code} has no designated contact to send "
                              "tokens to", province=province_code)
    waiting = list(session.scalars(select(CertificateRequest).where(
        CertificateRequest.province_code == province_code,
        CertificateRequest.token_form == DEVICE, CertificateRequest.status == PERSONALISED,
        CertificateRequest.batch_id.is_(None)).order_by(CertificateRequest.id)
        .with_for_update()))
    batch = session.scalar(select(CourierBatch).where(
        CourierBatch.province_code == province_code, CourierBatch.status == BATCH_PREPARING)
        .with_for_update())
    if not waiting:
        if batch is not None:
            return batch
        raise BatchStateError(f"no personalised device token of {province_code} is waiting "
                              "for a batch", province=province_code)
    created = batch is None
    if batch is None:
        batch = CourierBatch(province_code=province_code, contact_id=contact.id,
                             status=BATCH_PREPARING, courier="Amana",
                             prepared_at=clock.now(), prepared_by=actor)
        try:
            with session.begin_nested():
                session.add(batch)
        except IntegrityError as exc:  # another operator opened it at the same moment
            raise BatchStateError(f"a batch for {province_code} is being prepared; retry",
                                  province=province_code) from exc
    for request in waiting:
        request.batch_id = batch.id
    session.flush()
    record(session, clock, actor=actor,
           action="delivery.batch.prepared" if created else "delivery.batch.extended",
           object_type="batch", object_id=batch.id,
           summary={"province": province_code, "contact_id": batch.contact_id,
                    "added_requests": [r.id for r in waiting]})
    return batch


def dispatch_batch(session: Session, clock: Clock, batch_id: int, *, tracking_number: str,
                   actor: str, policy: DeliveryPolicy) -> CourierBatch:
    """Hand the parcel to the courier: every token in it is shipped; the contact is told the
    tracking number; with ``pin_send_at == "dispatch"`` the PINs go out now."""
    tracking = normalise_tracking(tracking_number)
    batch = get_batch(session, batch_id, lock=True)
    if batch.status != BATCH_PREPARING:
        raise BatchStateError(f"batch {batch.id} is {batch.status}, not preparing",
                              batch_id=batch.id, status=batch.status)
    if session.scalar(select(CourierBatch.id).where(
            CourierBatch.tracking_number == tracking)) is not None:
        raise InvalidTracking(f"tracking number {tracking} is already used by another batch",
                              field="tracking_number")
    requests = batch_requests(session, batch.id)
    if not requests:
        raise BatchStateError(f"batch {batch.id} is empty", batch_id=batch.id)
    now = clock.now()
    batch.status = BATCH_DISPATCHED
    batch.tracking_number = tracking
    batch.dispatched_at = now
    batch.dispatched_by = actor
    for request in requests:
        session.refresh(request, with_for_update=True)
        move(session, clock, request, "ship", actor=actor, note=f"Amana {tracking}",
             summary={"batch_id": batch.id})
        if policy.pin_send_at == PIN_AT_DISPATCH:
            notices.enqueue_initial_pin(session, clock, request,
                                        get_holder(session, request.holder_id))
    session.flush()
    contact = require_active_contact(session, batch.contact_id)
    notices.enqueue_batch_dispatched(session, clock, batch, contact, len(requests))
    record(session, clock, actor=actor, action="delivery.batch.dispatched",
           object_type="batch", object_id=batch.id,
           summary={"province": batch.province_code, "tracking_number": tracking,
                    "courier": batch.courier, "tokens": len(requests),
                    "pins_sent_now": policy.pin_send_at == PIN_AT_DISPATCH})
    return batch


def receive_batch(session: Session, clock: Clock, batch_id: int, *, actor: str,
                  contact_id: int | None = None,
                  received_at: datetime | None = None) -> CourierBatch:
    """The contact received the parcel (with ``contact_id``: only the batch's province's
    designated contact may say so). Every token in it is delivered to the contact."""
    batch = get_batch(session, batch_id, lock=True)
    if contact_id is not None:
        require_active_contact(session, contact_id, batch.province_code)
    if batch.status != BATCH_DISPATCHED:
        raise BatchStateError(f"batch {batch.id} is {batch.status}, not dispatched",
                              batch_id=batch.id, status=batch.status)
    at = _past(clock, received_at, not_before=batch.dispatched_at)
    batch.status = BATCH_RECEIVED
    batch.received_at = at
    batch.received_by = actor
    requests = batch_requests(session, batch.id)
    for request in requests:
        session.refresh(request, with_for_update=True)
        move(session, clock, request, "receive", actor=actor, summary={"batch_id": batch.id},
             at=at)
    session.flush()
    record(session, clock, actor=actor, action="delivery.batch.received",
           object_type="batch", object_id=batch.id,
           summary={"province": batch.province_code, "tokens": len(requests),
                    "received_at": at.isoformat()})
    return batch


def _past(clock: Clock, at: datetime | None, *, not_before: datetime | None) -> datetime:
    now = clock.now()
    if at is None:
        return now
    at = as_utc(at)
    if at > now:
        raise BatchStateError("a reception or hand-over cannot be recorded in the future")
    if not_before is not None and at < as_utc(not_before):
        raise BatchStateError("that time is before the previous step")
    return at


def record_handover(session: Session, clock: Clock, request_id: int, *, handed_to: str,
                    acknowledgement: str, actor: str, policy: DeliveryPolicy,
                    contact_id: int | None = None,
                    at: datetime | None = None) -> CertificateRequest:
    """The contact handed the token to its holder: to whom (the holder, or whom they
    mandated), when, and the holder's acknowledgement (e.g. the signed receipt's
    reference). With ``pin_send_at == "handover"`` the PIN goes out now."""
    handed_to = require_text(handed_to, field="handed_to")
    acknowledgement = require_text(acknowledgement, field="acknowledgement", max_length=500)
    request = get_request(session, request_id, lock=True)
    if contact_id is not None:
        require_active_contact(session, contact_id, request.province_code)
    batch = get_batch(session, request.batch_id) if request.batch_id is not None else None
    when = _past(clock, at, not_before=batch.received_at if batch else None)
    move(session, clock, request, "hand_over", actor=actor, note=f"to {handed_to}",
         summary={"handed_to": handed_to, "at": when.isoformat(),
                  "batch_id": request.batch_id}, at=when)
    request.handed_over_to = handed_to
    request.handover_acknowledgement = acknowledgement
    request.handed_over_at = when
    if policy.pin_send_at == PIN_AT_HANDOVER:
        notices.enqueue_initial_pin(session, clock, request,
                                    get_holder(session, request.holder_id))
    session.flush()
    return request


@dataclass(frozen=True)
class OverdueToken:
    request_id: int
    holder_id: int
    holder_name: str
    cin: str
    province_code: str
    batch_id: int
    received_at: datetime
    days_waiting: int


def overdue_handovers(session: Session, clock: Clock, *, overdue_days: int,
                      province_code: str | None = None, limit: int | None = None,
                      offset: int = 0) -> Page[OverdueToken]:
    """Tokens the contact received more than ``overdue_days`` ago and has not handed over,
    the longest waiting first."""
    now = clock.now()
    query = (select(CertificateRequest, CourierBatch, Holder)
             .join(CourierBatch, CourierBatch.id == CertificateRequest.batch_id)
             .join(Holder, Holder.id == CertificateRequest.holder_id)
             .where(CertificateRequest.status == DELIVERED,
                    CourierBatch.received_at < now - timedelta(days=overdue_days))
             .order_by(CourierBatch.received_at, CertificateRequest.id))
    if province_code:
        query = query.where(CertificateRequest.province_code == province_code)

    def overdue(row: tuple[CertificateRequest, CourierBatch, Holder]) -> OverdueToken:
        request, batch, holder = row
        received = as_utc(batch.received_at) if batch.received_at else now
        return OverdueToken(request.id, holder.id,
                            f"{holder.given_name_fr} {holder.surname_fr}", holder.cin,
                            request.province_code, batch.id, received, (now - received).days)

    return rows_page(session, query, limit=limit, offset=offset).map(overdue)


def is_overdue(session: Session, clock: Clock, request: CertificateRequest, *,
               overdue_days: int) -> bool:
    if request.status != DELIVERED or request.batch_id is None:
        return False
    batch = get_batch(session, request.batch_id)
    return batch.received_at is not None and \
        as_utc(batch.received_at) < clock.now() - timedelta(days=overdue_days)

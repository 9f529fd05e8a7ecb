"""Designated contacts: one per prefecture/province, named by its wali or governor.

The contact receives the province's courier batches and hands each token to its holder.
Designating a new contact for a province that has one replaces it: the old row is closed
(kept, with its end and successor), and the open batches pass to the new contact. Both are
audited in the same transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from core.audit import record
from core.clock import Clock
from core.listing import Page, scalars_page
from delivery.errors import ContactInactive, ContactNotFound, InvalidContact, OutOfProvince
from delivery.models import (
    BATCH_DISPATCHED,
    BATCH_PREPARING,
    BATCH_RECEIVED,
    DELIVERED,
    CertificateRequest,
    Contact,
    CourierBatch,
)
from delivery.validation import normalise_email, normalise_phone, require_text
from quotas.models import Province


@dataclass(frozen=True)
class ContactDesignation:
    """The designation template's fields, validated and normalised on construction."""

    province_code: str
    full_name: str
    title: str
    phone: str
    postal_address: str
    email: str
    decision_reference: str
    decision_date: date
    designated_by: str

    def __post_init__(self) -> None:
        def put(name: str, value: object) -> None:
            object.__setattr__(self, name, value)

        put("province_code", require_text(self.province_code, field="province_code",
                                          max_length=6, error=InvalidContact))
        for name in ("full_name", "title", "designated_by"):
            put(name, require_text(getattr(self, name), field=name, error=InvalidContact))
        put("postal_address", require_text(self.postal_address, field="postal_address",
                                           max_length=500, error=InvalidContact))
        put("decision_reference", require_text(self.decision_reference,
                                               field="decision_reference", max_length=100,
                                               error=InvalidContact))
        put("phone", normalise_phone(self.phone, mobile=False, field="phone",
                                     error=InvalidContact))
        put("email", normalise_email(self.email, field="email", error=InvalidContact))
        if not isinstance(self.decision_date, date):
            raise InvalidContact("decision_date must be a date", field="decision_date")


def active_contact(session: Session, province_code: str) -> Contact | None:
    return session.scalar(select(Contact).where(Contact.province_code == province_code,
                                                Contact.active.is_(True)))


def designated_contact_id(session: Session, province_code: str) -> int:
    """The province's designated contact, through whom its requests and registrations are
    made; :class:`ContactNotFound` when the province has none."""
    contact = active_contact(session, province_code)
    if contact is None:
        raise ContactNotFound(f"province {province_code} has no designated contact",
                              province_code=province_code)
    return contact.id


def acting_contact_id(session: Session, province_code: str, *, as_contact: bool
                      ) -> int | None:
    """Which contact acts: a caller who is a contact acts as their province's designated
    contact (checked by the services that take ``contact_id``); anyone else (an operator)
    acts in their own name: None. The API and the web pages share this rule."""
    return designated_contact_id(session, province_code) if as_contact else None


def get_contact(session: Session, contact_id: int) -> Contact:
    contact = session.get(Contact, contact_id)
    if contact is None:
        raise ContactNotFound(f"no contact {contact_id}", contact_id=contact_id)
    return contact


def require_active_contact(session: Session, contact_id: int,
                           province_code: str | None = None) -> Contact:
    """The contact, if still designated, and (when given) for ``province_code``."""
    contact = get_contact(session, contact_id)
    if not contact.active:
        raise ContactInactive(f"contact {contact_id} was replaced", contact_id=contact_id)
    if province_code is not None and contact.province_code != province_code:
        raise OutOfProvince(f"contact {contact_id} acts for {contact.province_code}, "
                            f"not {province_code}", contact_province=contact.province_code,
                            province=province_code)
    return contact


def list_contacts(session: Session, *, province_code: str | None = None,
                  include_inactive: bool = False, limit: int | None = None,
                  offset: int = 0) -> Page[Contact]:
    """Designated contacts (current ones unless ``include_inactive``), by province and
    designation time."""
    query = select(Contact).order_by(Contact.province_code, Contact.designated_at,
                                     Contact.id)
    if province_code:
        query = query.where(Contact.province_code == province_code)
    if not include_inactive:
        query = query.where(Contact.active.is_(True))
    return scalars_page(session, query, limit=limit, offset=offset)


def _open_batches(session: Session, province_code: str) -> list[CourierBatch]:
    """Batches still needing their contact: not yet received, or received with tokens not
    handed over yet."""
    waiting = exists().where(CertificateRequest.batch_id == CourierBatch.id,
                             CertificateRequest.status == DELIVERED)
    return list(session.scalars(select(CourierBatch).where(
        CourierBatch.province_code == province_code,
        CourierBatch.status.in_((BATCH_PREPARING, BATCH_DISPATCHED))
        | ((CourierBatch.status == BATCH_RECEIVED) & waiting)).order_by(CourierBatch.id)))


def designate_contact(session: Session, clock: Clock, designation: ContactDesignation, *,
                      actor: str) -> Contact:
    """Register the province's designated contact, replacing the current one if any."""
    if session.get(Province, designation.province_code) is None:
        raise InvalidContact(f"no prefecture/province {designation.province_code}",
                             field="province_code")
    now = clock.now()
    previous = session.scalar(select(Contact).where(
        Contact.province_code == designation.province_code, Contact.active.is_(True))
        .with_for_update())
    if previous is not None:
        previous.active = False
        previous.ended_at = now
        session.flush()  # free the province's "one active contact" slot first
    contact = Contact(
        province_code=designation.province_code, full_name=designation.full_name,
        title=designation.title, phone=designation.phone,
        postal_address=designation.postal_address, email=designation.email,
        decision_reference=designation.decision_reference,
        decision_date=designation.decision_date, designated_by=designation.designated_by,
        active=True, designated_at=now, recorded_by=actor)
    session.add(contact)
    session.flush()
    summary: dict[str, object] = {
        "province": contact.province_code, "full_name": contact.full_name,
        "title": contact.title, "decision_reference": contact.decision_reference,
        "decision_date": contact.decision_date.isoformat(),
        "designated_by": contact.designated_by}
    if previous is None:
        record(session, clock, actor=actor, action="delivery.contact.designated",
               object_type="contact", object_id=contact.id, summary=summary)
        return contact
    previous.replaced_by_id = contact.id
    moved = _open_batches(session, contact.province_code)
    for batch in moved:
        batch.contact_id = contact.id
    session.flush()
    record(session, clock, actor=actor, action="delivery.contact.replaced",
           object_type="contact", object_id=contact.id,
           summary={**summary, "replaces": previous.id,
                    "batches_handed_over": [b.id for b in moved]})
    for batch in moved:
        record(session, clock, actor=actor, action="delivery.batch.contact_changed",
               object_type="batch", object_id=batch.id,
               summary={"from_contact": previous.id, "to_contact": contact.id})
    return contact

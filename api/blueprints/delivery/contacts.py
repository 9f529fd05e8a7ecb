"""Designated contacts: one active per province, designated by the governor's decision."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

from flask import url_for

from api.delivery_common import PROVINCE
from api.policy import Scope, merge_filter
from api.routing import Call, Routes
from api.schema import PageQuery, make_page, page_of, rule
from delivery import (
    contacts,
)
from delivery.models import Contact
from delivery.validation import (
    PHONE_MAX_LENGTH,
    PHONE_MIN_LENGTH,
)

routes = Routes()


@dataclass(frozen=True)
class ContactIn:
    """The governor's designation of a province's contact (replaces the current one)."""

    province_code: str = field(metadata=rule(pattern=PROVINCE))
    full_name: str = field(metadata=rule(min_length=1, max_length=200))
    title: str = field(metadata=rule(min_length=1, max_length=200))
    phone: str = field(metadata=rule(min_length=PHONE_MIN_LENGTH, max_length=PHONE_MAX_LENGTH))
    postal_address: str = field(metadata=rule(min_length=1, max_length=500))
    email: str = field(metadata=rule(min_length=3, max_length=254, format="email"))
    decision_reference: str = field(metadata=rule(min_length=1, max_length=100))
    decision_date: date
    designated_by: str = field(metadata=rule(min_length=1, max_length=200))


@dataclass(frozen=True)
class ContactOut:
    id: int
    province_code: str
    full_name: str
    title: str
    phone: str
    postal_address: str
    email: str
    decision_reference: str
    decision_date: date
    designated_by: str
    active: bool
    designated_at: datetime
    ended_at: datetime | None


@dataclass(frozen=True)
class ContactQuery(PageQuery):
    province: str | None = field(default=None, metadata=rule(pattern=PROVINCE))
    include_inactive: bool = False


def contact_out(c: Contact) -> ContactOut:
    return ContactOut(c.id, c.province_code, c.full_name, c.title, c.phone, c.postal_address,
                      c.email, c.decision_reference, c.decision_date, c.designated_by,
                      c.active, c.designated_at, c.ended_at)


@routes.operation("GET", "/contacts", action="contacts.read", query=ContactQuery,
                  response=page_of(ContactOut), summary="Designated contacts")
def list_contacts(call: Call, query: ContactQuery) -> object:
    province = merge_filter(call.list_scope(), province_code=query.province)
    found = contacts.list_contacts(call.session, province_code=province,
                                   include_inactive=query.include_inactive,
                                   limit=query.limit, offset=query.offset)
    return make_page(ContactOut, [contact_out(c) for c in found.items], found.total,
                     query.limit, query.offset)


@routes.operation("POST", "/contacts", action="contacts.write", body=ContactIn,
                  response=ContactOut, status=201, idempotency="optional",
                  summary="Register a province's designated contact")
def designate_contact(call: Call, body: ContactIn) -> ContactOut:
    call.authorize(Scope(province_code=body.province_code))
    contact = contacts.designate_contact(call.session, call.clock, contacts.ContactDesignation(
        body.province_code, body.full_name, body.title, body.phone, body.postal_address,
        body.email, body.decision_reference, body.decision_date, body.designated_by),
        actor=call.actor)
    call.location = url_for("delivery.get_contact", contact_id=contact.id)
    return contact_out(contact)


@routes.operation("GET", "/contacts/<id:contact_id>", action="contacts.read",
                  response=ContactOut, summary="One designated contact")
def get_contact(call: Call, contact_id: int) -> ContactOut:
    contact = contacts.get_contact(call.session, contact_id)
    call.authorize(Scope(province_code=contact.province_code))
    return contact_out(contact)

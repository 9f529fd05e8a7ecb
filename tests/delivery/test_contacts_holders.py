"""Designated contacts and holders."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.audit import AuditEvent
from core.clock import FrozenClock
from delivery import contacts, holders
from delivery.errors import (
    ContactInactive,
    ContactNotFound,
    HolderExists,
    InvalidContact,
    InvalidHolder,
    OutOfProvince,
)
from tests.delivery.conftest import (
    COMMUNE_A,
    OTHER_PROVINCE,
    OTHER_PROVINCE_COMMUNE,
    PROVINCE,
    designation,
    make_contact,
    make_holder,
    registration,
)


def _actions(session: Session, object_type: str, object_id: object) -> list[str]:
    return list(session.scalars(select(AuditEvent.action).where(
        AuditEvent.object_type == object_type, AuditEvent.object_id == str(object_id))
        .order_by(AuditEvent.seq)))


def test_designation_template_fields_are_validated() -> None:
    with pytest.raises(InvalidContact) as err:
        designation(email="not-an-email")
    assert err.value.extras["field"] == "email"
    with pytest.raises(InvalidContact):
        designation(full_name="  ")
    with pytest.raises(InvalidContact):
        designation(phone="123")
    ok = designation(phone="05 39 98 12 34")
    assert ok.phone == "+212539981234"
    assert ok.decision_date == date(2026, 2, 1)


def test_one_active_contact_per_province_and_replacement_is_audited(
        session: Session, clock: FrozenClock) -> None:
    first = make_contact(session, clock)
    assert contacts.active_contact(session, PROVINCE) is first
    assert _actions(session, "contact", first.id) == ["delivery.contact.designated"]
    second = make_contact(session, clock, full_name="Youssef Amrani",
                          decision_reference="DEC-2026-044")
    session.refresh(first)
    assert not first.active and first.ended_at is not None
    assert first.replaced_by_id == second.id
    assert contacts.active_contact(session, PROVINCE) is second
    event = session.scalars(select(AuditEvent).where(
        AuditEvent.action == "delivery.contact.replaced",
        AuditEvent.object_id == str(second.id))).one()
    assert event.summary_dict["replaces"] == first.id
    assert [c.id for c in contacts.list_contacts(session, province_code=PROVINCE).items] \
        == [second.id]
    assert contacts.list_contacts(session, province_code=PROVINCE,
                                  include_inactive=True).total == 2
    with pytest.raises(ContactInactive):
        contacts.require_active_contact(session, first.id)
    with pytest.raises(InvalidContact):
        make_contact(session, clock, province="99.999")


def test_which_contact_acts(session: Session, clock: FrozenClock) -> None:
    """The rule the API and the web pages share: a contact acts as their province's
    designated contact; anyone else in their own name; a province without one refuses."""
    with pytest.raises(ContactNotFound):
        contacts.designated_contact_id(session, PROVINCE)
    with pytest.raises(ContactNotFound):
        contacts.acting_contact_id(session, PROVINCE, as_contact=True)
    assert contacts.acting_contact_id(session, PROVINCE, as_contact=False) is None
    first = make_contact(session, clock)
    assert contacts.acting_contact_id(session, PROVINCE, as_contact=True) == first.id
    second = make_contact(session, clock, full_name="Youssef Amrani",
                          decision_reference="DEC-2026-044")
    assert contacts.designated_contact_id(session, PROVINCE) == second.id
    assert contacts.acting_contact_id(session, PROVINCE, as_contact=False) is None


def test_holder_registration(session: Session, clock: FrozenClock) -> None:
    contact = make_contact(session, clock)
    holder = make_holder(session, clock, contact=contact, cin="ab123456",
                         mobile="06 61 23 45 67", professional_email="p@commune.ma")
    assert holder.cin == "AB123456"
    assert holder.mobile == "+212661234567"
    assert holder.entity == f"commune:{COMMUNE_A}"
    assert holder.province_code == PROVINCE
    assert holder.registered_by_contact_id == contact.id
    assert _actions(session, "holder", holder.id) == ["delivery.holder.registered",
                                                     "delivery.mandate.opened"]
    assert holders.find_by_cin(session, "ab 123456") is holder
    with pytest.raises(HolderExists):
        make_holder(session, clock, cin="AB123456")
    services = make_holder(session, clock, commune=None, province_code=PROVINCE,
                           role="official")
    assert services.entity == f"services:{PROVINCE}"
    prof = holders.profile(session, holder)
    assert prof.serial_number == "IDCMA-AB123456"
    assert prof.organisation_fr.startswith("Commune ")
    assert holders.profile(session, services).organisation_fr.startswith("Services")


def test_holder_validation_and_province_scope(session: Session, clock: FrozenClock) -> None:
    contact = make_contact(session, clock)
    with pytest.raises(InvalidHolder) as err:
        registration(cin="123")
    assert err.value.extras["field"] == "cin"
    with pytest.raises(InvalidHolder, match="mobile"):
        registration(mobile="0522123456")  # a landline cannot receive the PIN
    with pytest.raises(InvalidHolder):
        registration(role="mayor")
    with pytest.raises(InvalidHolder):
        registration(commune=None)  # neither commune nor province
    with pytest.raises(InvalidHolder):
        registration(commune=None, province_code=PROVINCE)  # a president needs a commune
    with pytest.raises(InvalidHolder, match="arrondissement"):
        make_holder(session, clock, commune="01.511.01.03")  # an arrondissement of Tanger
    with pytest.raises(OutOfProvince):
        make_holder(session, clock, commune=OTHER_PROVINCE_COMMUNE, contact=contact)
    other = make_holder(session, clock, commune=OTHER_PROVINCE_COMMUNE)
    assert other.province_code == OTHER_PROVINCE


def test_a_professional_email_change_is_audited_without_values(session: Session,
                                                                 clock: FrozenClock) -> None:
    holder = make_holder(session, clock)
    holders.update_contact_details(session, clock, holder.id, actor="contact",
                                   professional_email="k.benali@commune.ma")
    assert holder.professional_email == "k.benali@commune.ma"
    event = session.scalars(select(AuditEvent).where(
        AuditEvent.action == "delivery.holder.updated",
        AuditEvent.object_id == str(holder.id)).order_by(AuditEvent.seq.desc())).first()
    assert event is not None
    assert event.summary_dict == {"changed": ["professional_email"],
                                  "awaiting_confirmation": []}
    assert event.actor == "contact"

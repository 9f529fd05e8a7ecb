"""Mandates: a holder's roles over time, the request that belongs to one, a change of
mandate (the old one ended, its open requests cancelled, a request for the new one), and the
migration that turned each holder's role into a first mandate."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlalchemy import select, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from core.audit import AuditEvent
from core.clock import FrozenClock
from core.migrate import downgrade, upgrade
from delivery import holders, mandate_change, mandates, requests
from delivery.errors import InvalidHolder, MandateChangeBlocked, NoMandateInForce
from delivery.models import CANCELLED, CertificateRequest, Mandate
from quotas.models import Reservation
from tests.delivery.conftest import (
    COMMUNE_A,
    COMMUNE_B,
    OTHER_PROVINCE_COMMUNE,
    PROVINCE,
    designation,
    fresh_year,
    make_contact,
    make_holder,
)

NEVER: mandate_change.Revoker = lambda serials, reason, actor: pytest.fail(  # noqa: E731
    f"nothing to revoke, asked for {list(serials)}")


def _actions(session: Session, holder_id: int) -> list[str]:
    return list(session.scalars(select(AuditEvent.action).where(
        AuditEvent.object_type == "holder", AuditEvent.object_id == str(holder_id))
        .order_by(AuditEvent.seq)))


def test_registration_opens_the_first_mandate_and_requests_belong_to_it(
        session: Session, clock: FrozenClock) -> None:
    contact = make_contact(session, clock)
    holder = make_holder(session, clock, COMMUNE_A, contact=contact, role="vice_president",
                         professional_email="vp@commune.ma",
                         mandate_started_on=date(2021, 9, 20))
    [first] = mandates.history(session, holder.id)
    assert (first.role, first.entity, first.started_on, first.ended_on) == (
        "vice_president", f"commune:{COMMUNE_A}", date(2021, 9, 20), None)
    assert first.professional_email == "vp@commune.ma"
    assert mandates.current_mandate(session, holder.id) is first
    request = requests.submit_request(session, clock, contact_id=contact.id,
                                      holder_id=holder.id, token_form="hosted",
                                      actor="contact", year=fresh_year())
    assert request.mandate_id == first.id
    assert _actions(session, holder.id) == ["delivery.holder.registered",
                                            "delivery.mandate.opened"]


def test_vice_president_becomes_president_and_the_history_is_kept(
        session: Session, clock: FrozenClock) -> None:
    contact = make_contact(session, clock)
    year = fresh_year()
    holder = make_holder(session, clock, COMMUNE_A, contact=contact, role="vice_president",
                         civility="mrs", mandate_started_on=date(2021, 9, 20))
    waiting = requests.submit_request(session, clock, contact_id=contact.id,
                                      holder_id=holder.id, token_form="device",
                                      actor="contact", year=year)
    result = mandate_change.change_mandate(
        session, clock, holder.id, mandate_change.MandateChange(
            role="president", started_on=date(2026, 9, 20), commune_code=COMMUNE_A,
            professional_email="presidente@commune.ma", reason="elected president"),
        actor="operator", revoke=NEVER, token_form="device")
    assert result.revoked == ()
    assert result.cancelled_requests == (waiting.id,)
    assert waiting.status == CANCELLED
    assert session.get_one(Reservation, waiting.reservation_id).status == "released"
    old, new = mandates.history(session, holder.id)
    assert (old.ended_on, old.successor_id, old.end_reason) == (
        date(2026, 9, 20), new.id, "elected president")
    assert (new.role, new.started_on, new.ended_on) == ("president", date(2026, 9, 20), None)
    assert holder.role == "president" and holder.professional_email == "presidente@commune.ma"
    assert result.request is not None and result.request.mandate_id == new.id
    assert result.request.contact_id == contact.id and result.request.year == clock.now().year
    named = holders.profile(session, holder, new)
    assert named.title_fr == "Présidente du conseil de la commune"
    assert named.email == "presidente@commune.ma"
    # the old mandate still names its own role for what was issued under it
    assert holders.profile(session, holder, old).title_ar == "نائبة رئيس مجلس الجماعة"
    assert _actions(session, holder.id)[-2:] == ["delivery.mandate.ended",
                                                 "delivery.mandate.opened"]


def test_a_move_to_another_commune_and_its_refusals(session: Session,
                                                    clock: FrozenClock) -> None:
    make_contact(session, clock)
    holder = make_holder(session, clock, COMMUNE_A, role="official")
    same = mandate_change.MandateChange(role="official", started_on=clock.now().date(),
                                        commune_code=COMMUNE_A)
    with pytest.raises(InvalidHolder):  # nothing changes
        mandate_change.change_mandate(session, clock, holder.id, same, actor="op",
                                      revoke=NEVER)
    with pytest.raises(InvalidHolder):  # a president of the provincial services
        mandate_change.MandateChange(role="president", started_on=date(2026, 1, 1),
                                     province_code=PROVINCE, reason="")
    with pytest.raises(InvalidHolder):
        mandate_change.change_mandate(session, clock, holder.id, mandate_change.MandateChange(
            role="official", started_on=date(2000, 1, 1), commune_code=COMMUNE_B),
            actor="op", revoke=NEVER)
    # a contact acts only on holders of their province, before and after
    other = make_contact(session, clock, "01.151", email="c.chefchaouen@interieur.gov.ma")
    with pytest.raises(Exception) as err:
        mandate_change.change_mandate(session, clock, holder.id, mandate_change.MandateChange(
            role="official", started_on=clock.now().date(),
            commune_code=OTHER_PROVINCE_COMMUNE), actor="c", revoke=NEVER,
            acting_contact_id=other.id)
    assert type(err.value).__name__ == "OutOfProvince"
    moved = mandate_change.change_mandate(
        session, clock, holder.id, mandate_change.MandateChange(
            role="official", started_on=clock.now().date(), commune_code=COMMUNE_B,
            reason="transferred"), actor="op", revoke=NEVER)
    assert moved.opened.entity == f"commune:{COMMUNE_B}" and moved.request is None
    assert holder.commune_code == COMMUNE_B


def test_a_token_under_way_for_the_old_mandate_blocks_the_change(
        session: Session, clock: FrozenClock) -> None:
    contact = make_contact(session, clock)
    holder = make_holder(session, clock, COMMUNE_A, contact=contact)
    request = requests.submit_request(session, clock, contact_id=contact.id,
                                      holder_id=holder.id, token_form="device",
                                      actor="contact", year=fresh_year())
    request.status = "shipped"  # as if personalised and shipped (the flow tests do it)
    session.flush()
    with pytest.raises(MandateChangeBlocked) as err:
        mandate_change.change_mandate(session, clock, holder.id, mandate_change.MandateChange(
            role="vice_president", started_on=clock.now().date(), commune_code=COMMUNE_A),
            actor="op", revoke=NEVER)
    assert err.value.extras["request_ids"] == [request.id]
    assert mandates.current_mandate(session, holder.id) is not None


def test_an_ended_mandate_takes_no_request(session: Session, clock: FrozenClock) -> None:
    contact = make_contact(session, clock)
    holder = make_holder(session, clock, COMMUNE_A, contact=contact)
    ended, serials = mandate_change.end_mandate(session, clock, holder.id,
                                                ended_on=clock.now().date(),
                                                reason="not re-elected", actor="op",
                                                revoke=NEVER)
    assert serials == [] and ended.ended_on == clock.now().date()
    assert mandates.current_mandate(session, holder.id) is None
    with pytest.raises(NoMandateInForce):
        requests.submit_request(session, clock, contact_id=contact.id, holder_id=holder.id,
                                token_form="hosted", actor="contact", year=fresh_year())
    with pytest.raises(NoMandateInForce):
        mandate_change.end_mandate(session, clock, holder.id, ended_on=clock.now().date(),
                                   reason="again", actor="op", revoke=NEVER)


def test_the_holders_cached_mandate_never_disagrees_with_the_mandates(
        session: Session, clock: FrozenClock) -> None:
    """The holder's role, entity and professional address repeat the latest mandate (in
    force, else the last ended) through every change, and a column written behind the
    mandates' back is found."""
    contact = make_contact(session, clock)
    holder = make_holder(session, clock, COMMUNE_A, contact=contact, role="official",
                         professional_email="o@commune.ma",
                         mandate_started_on=date(2020, 1, 1))
    other = make_holder(session, clock, None, contact=contact, role="official",
                        province_code=PROVINCE)
    ids = [holder.id, other.id]

    def agree() -> None:
        assert mandates.cache_disagreements(session, ids) == []
        latest = mandates.latest_mandate(session, holder.id)
        assert latest is not None
        assert (holder.role, holder.entity, holder.professional_email) == (
            latest.role, latest.entity, latest.professional_email)
        named = holders.profile(session, holder)
        assert named.entity == latest.entity

    agree()
    mandate_change.change_mandate(session, clock, holder.id, mandate_change.MandateChange(
        role="vice_president", started_on=date(2023, 1, 1), commune_code=COMMUNE_A),
        actor="op", revoke=NEVER)
    agree()
    assert holder.professional_email is None  # the new mandate has no address yet
    holders.update_contact_details(session, clock, holder.id, actor="op",
                                   professional_email="vp@commune.ma")
    agree()
    assert mandates.current_mandate(session, holder.id).professional_email == "vp@commune.ma"  # type: ignore[union-attr]
    mandate_change.change_mandate(session, clock, holder.id, mandate_change.MandateChange(
        role="president", started_on=date(2026, 3, 1), commune_code=COMMUNE_B),
        actor="op", revoke=NEVER)
    agree()
    assert holder.commune_code == COMMUNE_B
    mandate_change.end_mandate(session, clock, holder.id, ended_on=date(2026, 3, 10),
                               reason="resigned", actor="op", revoke=NEVER)
    agree()  # the last mandate, ended, is still the one the holder's columns repeat
    assert holder.role == "president"
    with pytest.raises(NoMandateInForce):  # an address belongs to a mandate in force
        holders.update_contact_details(session, clock, holder.id, actor="op",
                                       professional_email="x@commune.ma")
    # A column written behind the mandates' back is caught.
    holder.commune_code = COMMUNE_A
    other.role = "president"
    session.flush()
    assert sorted(mandates.cache_disagreements(session, ids)) == sorted(
        [(holder.id, "commune_code"), (other.id, "role")])



def test_the_migration_turns_each_holder_into_a_first_mandate(bare_engine: Engine) -> None:
    """Holders and requests written before mandates existed keep their data: each holder's
    role and entity become a first mandate in force, and each request belongs to it."""
    from delivery import contacts
    from quotas import ledger, policy, refdata
    upgrade(bare_engine)
    downgrade(bare_engine, "delivery_0005")
    cin = f"MG{uuid.uuid4().int % 10**6:06d}"
    clock = FrozenClock(datetime(2026, 3, 1, 9, 30, tzinfo=UTC))
    with Session(bare_engine) as session, session.begin():
        refdata.load(session, clock)
        policy.ensure_default_policies(session, clock)
        contact_id = contacts.designate_contact(session, clock, designation(),
                                                actor="governor").id
        reservation_id = ledger.reserve(session, clock, ledger.Entity.parse(COMMUNE_A), 2026,
                                        actor="t").reservation_id
    with bare_engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO delivery_holder (cin, given_name_fr, surname_fr, given_name_ar, "
            "surname_ar, civility, role, entity_kind, commune_code, province_code, mobile, "
            "email, created_at, updated_at) VALUES (:cin, 'A', 'B', 'أحمد', 'ب', 'mr', "
            "'president', 'commune', :commune, :province, '+212661234567', 'a@b.ma', "
            ":at, :at)"), {"cin": cin, "commune": COMMUNE_A, "province": PROVINCE,
                           "at": clock.now()})
        conn.execute(text(
            "INSERT INTO delivery_request (holder_id, contact_id, province_code, entity, year, "
            "token_form, status, status_reason, reservation_id, pin_change_required, "
            "submitted_at, updated_at) SELECT id, :contact, province_code, :entity, 2026, "
            "'device', 'submitted', '', :reservation, :yes, :at, :at FROM delivery_holder "
            "WHERE cin = :cin"), {"contact": contact_id, "entity": f"commune:{COMMUNE_A}",
                                  "reservation": reservation_id, "yes": True,
                                  "at": clock.now(), "cin": cin})
    upgrade(bare_engine)
    with Session(bare_engine) as session:
        holder = holders.find_by_cin(session, cin)
        assert holder is not None
        [first] = mandates.history(session, holder.id)
        assert (first.role, first.entity, first.ended_on) == (
            "president", f"commune:{COMMUNE_A}", None)
        assert first.started_on == clock.now().date()
        assert session.scalar(select(Mandate.id).where(Mandate.holder_id == holder.id)) \
            == first.id
        [request] = session.scalars(select(CertificateRequest)).all()
        assert request.holder_id == holder.id and request.mandate_id == first.id


def test_only_the_mandates_write_the_holders_cached_columns() -> None:
    """The holder's role, entity and professional address are a cache of the mandates:
    no code but ``delivery.mandates`` assigns them (nor updates them in SQL)."""
    root = Path(__file__).resolve().parents[2]
    cached = "|".join(mandates.CACHED)
    assigned = re.compile(rf"\b\w*holder\w*\.({cached})\s*=(?!=)", re.IGNORECASE)
    updated = re.compile(r"update\(\s*Holder\s*\)")
    found = []
    for package in ("api", "bench", "core", "delivery", "pki", "quotas"):
        for path in sorted((root / package).rglob("*.py")):
            if "migrations" in path.parts or path == root / "delivery" / "mandates.py":
                continue
            source = path.read_text(encoding="utf-8")
            found += [f"{path.relative_to(root)}: {m.group(0)}"
                      for pattern in (assigned, updated) for m in pattern.finditer(source)]
    assert found == []

"""Titles agree with the holder's civility, in French and Arabic; the certificate profile,
the web pages and the API take them from one function."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.audit import AuditEvent
from core.clock import FrozenClock
from delivery import holders
from delivery.errors import InvalidHolder
from delivery.titles import CIVILITIES, ROLES, civility_label, parse_civility, title_for
from tests.delivery.conftest import COMMUNE_A, make_holder, registration


def test_a_woman_presides_in_both_languages() -> None:
    assert title_for("president", "mrs", "fr") == "Présidente du conseil de la commune"
    assert title_for("president", "mrs", "ar") == "رئيسة مجلس الجماعة"
    assert title_for("president", "mr", "fr") == "Président du conseil de la commune"
    assert title_for("president", "mr", "ar") == "رئيس مجلس الجماعة"
    assert title_for("vice_president", "mrs", "fr") == "Vice-présidente du conseil de la commune"
    assert title_for("official", "mrs", "ar") == "موظفة مؤهلة"
    assert civility_label("mrs", "fr") == "Madame" and civility_label("mrs", "ar") == "السيدة"


def test_every_role_has_both_forms_in_both_languages() -> None:
    for role in ROLES:
        forms = {title_for(role, c, lang) for c in CIVILITIES for lang in ("fr", "ar")}
        assert len(forms) == 4, role


@pytest.mark.parametrize(("typed", "stored"), [
    ("Mme", "mrs"), ("F", "mrs"), ("madame", "mrs"), ("السيدة", "mrs"), ("M.", "mr"),
    ("M", "mr"), ("Monsieur", "mr"), (" mr ", "mr"), ("X", None), ("", None)])
def test_what_people_type_for_a_civility(typed: str, stored: str | None) -> None:
    assert parse_civility(typed) == stored


def test_unknown_role_civility_or_language_is_refused() -> None:
    for args in (("mayor", "mr", "fr"), ("president", "x", "fr"), ("president", "mr", "en")):
        with pytest.raises(ValueError):
            title_for(*args)


def test_registration_keeps_the_civility_and_the_profile_agrees(
        session: Session, clock: FrozenClock) -> None:
    with pytest.raises(InvalidHolder) as err:
        registration(civility="Dr")
    assert err.value.extras["field"] == "civility"
    holder = make_holder(session, clock, COMMUNE_A, civility="Mme")
    assert holder.civility == "mrs"
    named = holders.profile(session, holder)
    assert named.title_fr == "Présidente du conseil de la commune"
    assert named.title_ar == "رئيسة مجلس الجماعة"


def test_correcting_a_civility_is_audited(session: Session, clock: FrozenClock) -> None:
    holder = make_holder(session, clock, COMMUNE_A)
    assert holder.civility == "mr"
    holders.set_civility(session, clock, holder.id, "F", actor="operator")
    holders.set_civility(session, clock, holder.id, "mrs", actor="operator")  # no change
    assert holder.civility == "mrs"
    actions = list(session.scalars(select(AuditEvent.action).where(
        AuditEvent.object_type == "holder", AuditEvent.object_id == str(holder.id),
        AuditEvent.action == "delivery.holder.civility")))
    assert actions == ["delivery.holder.civility"]
    assert holders.profile(session, holder).title_fr.startswith("Présidente")

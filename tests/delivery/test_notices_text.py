"""The notices as a holder reads them: each SMS in one language (the holder's), the code
first, at most two billed segments with the longest names of the country; hosted and device
tokens get their own texts; counted things agree with their number (Arabic's six forms);
the glossary's words (jeton / جهاز التوقيع)."""

from __future__ import annotations

import csv
import json
import re
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.clock import FrozenClock
from delivery import notices, sms
from delivery.messages import TEMPLATES, arabic_form, counted, render
from delivery.models import OutboxMessage
from tests.delivery.conftest import make_contact, make_holder

CSV = Path(__file__).resolve().parents[2] / "quotas" / "data" / "morocco_communes.csv"
ARABIC = re.compile(r"[\u0600-\u06FF]")
LATIN_WORD = re.compile(r"[A-Za-zÀ-ÿ]{3,}")
SECRET = "48213795"  # the longest: an 8-digit PIN


def _longest() -> dict[str, str]:
    with CSV.open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return {key: max((r[key] for r in rows), key=len)
            for key in ("commune_name_fr", "commune_name_ar")}


def _params(name: str) -> dict[str, object]:
    longest = _longest()
    values: dict[str, object] = {
        "name_fr": "Abdelouahed Benabdeljalil El Idrissi",
        "name_ar": "عبد الواحد بنعبد الجليل الإدريسي",
        "entity_fr": f"commune {longest['commune_name_fr']}",
        "entity_ar": f"جماعة {longest['commune_name_ar']}",
        "form_fr": "jeton", "form_ar": "جهاز", "ttl_minutes": 10, "ttl_hours": 72,
        "purpose_fr": "une signature électronique", "purpose_ar": "توقيع إلكتروني",
        "what_fr": "adresse électronique", "what_ar": "البريد الإلكتروني",
        "new_hint": "k***@commune-exemple.gov.ma", "at": "2026-11-30 09:30:00",
        "by": "contact:k.alami",
        "not_after": "2027-01-15", "days": 30, "phone_tail": "8109"}
    # the longest title a holder can carry, feminine: it must fit as well
    return {**{k: values[k] for k in TEMPLATES[name].fields()},
            "civility": "mrs", "role": "vice_president"}


SMS = sorted(name for name, t in TEMPLATES.items() if t.sms)


@pytest.mark.parametrize("name", SMS)
@pytest.mark.parametrize("lang", ["fr", "ar"])
@pytest.mark.parametrize("form", ["hosted", "device"])
def test_each_sms_is_one_language_code_first_two_segments(name: str, lang: str,
                                                          form: str) -> None:
    template = TEMPLATES[name]
    params = {**_params(name), "lang": lang, "form": form}
    body = render(name, "sms", params, SECRET if template.needs_secret else None).body
    assert sms.segments(body) <= sms.MAX_SEGMENTS, (sms.encoding(body), sms.units(body), body)
    if template.needs_secret:
        assert body.startswith(SECRET) and body.count(SECRET) == 1
    if lang == "fr":
        assert not ARABIC.search(body), body
    else:
        words = body
        for value in params.values():  # an address is what it is
            words = words.replace(str(value), "")
        assert not LATIN_WORD.findall(words), body


def test_hosted_and_device_tokens_have_their_own_texts() -> None:
    params = _params("pin.initial")
    for lang in ("fr", "ar"):
        hosted = render("pin.initial", "sms", {**params, "lang": lang, "form": "hosted"},
                        SECRET).body
        device = render("pin.initial", "sms", {**params, "lang": lang, "form": "device"},
                        SECRET).body
        assert hosted != device
    email = {form: render("pin.initial", "email", {**params, "form": form}, SECRET).body
             for form in ("hosted", "device")}
    assert "remettra" in email["device"] and "aucun objet" in email["hosted"]
    assert "جهاز التوقيع" in render("pin.initial", "sms", {**params, "lang": "ar",
                                                           "form": "device"}, SECRET).body


def test_the_first_pin_sms_was_five_segments_and_is_now_at_most_two() -> None:
    body = render("pin.initial", "sms", {**_params("pin.initial"), "lang": "ar"}, SECRET).body
    assert sms.encoding(body) == "ucs2" and sms.segments(body) <= 2


@pytest.mark.parametrize(("n", "words"), [
    (1, "يوم واحد"), (2, "يومين"), (3, "3 أيام"), (10, "10 أيام"), (11, "11 يوما"),
    (30, "30 يوما"), (99, "99 يوما"), (100, "100 يوم"), (103, "103 أيام"), (111, "111 يوما")])
def test_arabic_number_agreement(n: int, words: str) -> None:
    assert counted("days", n, "ar") == words


def test_french_agreement_and_the_forms() -> None:
    assert counted("days", 1, "fr") == "1 jour" and counted("days", 7, "fr") == "7 jours"
    assert counted("count", 1, "fr") == "1 jeton" and counted("count", 3, "fr") == "3 jetons"
    assert [arabic_form(n) for n in (1, 2, 5, 12, 200)] == [0, 1, 2, 3, 4]
    batch = render("batch.dispatched", "email", {"contact_name": "K", "count": 2,
                                                 "province_fr": "Al Hoceima",
                                                 "province_ar": "الحسيمة",
                                                 "tracking_number": "EE123456785MA"}).body
    assert "2 jetons" in batch and "جهازي توقيع" in batch
    assert "support" not in batch and "حامل" not in batch


def test_segments_counts() -> None:
    assert sms.segments("a" * 160) == 1 and sms.segments("a" * 161) == 2
    assert sms.segments("a" * 306) == 2 and sms.segments("a" * 307) == 3
    assert sms.segments("€" * 80) == 1 and sms.segments("€" * 81) == 2  # extension: 2 each
    assert sms.segments("ع" * 70) == 1 and sms.segments("ع" * 71) == 2
    assert sms.segments("ع" * 134) == 2 and sms.segments("ع" * 135) == 3
    assert sms.encoding("Changez-le à la 1re signature") == "gsm7"
    assert sms.encoding("ça") == "ucs2"


HOLDER_EMAILS = sorted(name for name, t in TEMPLATES.items()
                       if t.email_body and "{greeting_fr}" in t.email_body)


@pytest.mark.parametrize("name", HOLDER_EMAILS)
def test_a_woman_is_addressed_as_madame_and_agreed_with_in_arabic(name: str) -> None:
    template = TEMPLATES[name]
    params = {**_params(name), "civility": "mrs", "role": "president"}
    body = render(name, "email", params, SECRET if template.needs_secret else None).body
    assert "Bonjour Madame Abdelouahed Benabdeljalil El Idrissi," in body
    assert "السيدة عبد الواحد بنعبد الجليل الإدريسي المحترمة،" in body
    assert "Monsieur" not in body and "السيد " not in body and "المحترم،" not in body
    if "{capacity_fr}" in (template.email_body or ""):
        assert " en qualité de Présidente du conseil de la commune (" in body
        assert " بصفتكم رئيسة مجلس الجماعة (" in body
        assert "Président du" not in body and "رئيس مجلس" not in body
    man = render(name, "email", {**params, "civility": "mr"},
                 SECRET if template.needs_secret else None).body
    assert "Bonjour Monsieur " in man and "الإدريسي المحترم،" in man
    assert "Madame" not in man and "المحترمة" not in man
    if "{capacity_fr}" in (template.email_body or ""):
        assert "en qualité de Président du conseil de la commune" in man
        assert "بصفتكم رئيس مجلس الجماعة" in man


def test_the_titles_follow_the_role_of_the_mandate() -> None:
    params = {**_params("pin.initial"), "form": "hosted", "civility": "mrs"}
    texts = {role: render("pin.initial", "email", {**params, "role": role}, SECRET).body
             for role in ("vice_president", "secretary_general", "official")}
    assert "en qualité de Vice-présidente du conseil de la commune" in texts["vice_president"]
    assert "بصفتكم نائبة رئيس مجلس الجماعة" in texts["vice_president"]
    assert "en qualité de Directrice générale des services" in texts["secretary_general"]
    assert "بصفتكم المديرة العامة للمصالح" in texts["secretary_general"]
    assert "en qualité de Fonctionnaire habilitée" in texts["official"]
    assert "بصفتكم موظفة مؤهلة" in texts["official"]


def test_the_contact_reads_the_holders_civility_and_title() -> None:
    params = {"contact_name": "Khadija Alami", "holder_fr": "Fatima Zahra Bennani",
              "holder_ar": "فاطمة الزهراء بناني", "civility": "mrs", "role": "president",
              "entity_fr": "commune Al Hoceima", "entity_ar": "جماعة الحسيمة",
              "not_after": "2027-01-15", "days": 7}
    body = render("expiry.contact", "email", params).body
    assert ("Le certificat de signature de Madame Fatima Zahra Bennani, Présidente du "
            "conseil de la commune (commune Al Hoceima) expire le 2027-01-15, dans 7 jours."
            in body)
    assert "شهادة توقيع السيدة فاطمة الزهراء بناني، رئيسة مجلس الجماعة (جماعة الحسيمة)" in body
    assert "بعد 7 أيام" in body


def test_a_row_queued_before_civility_renders_by_name() -> None:
    params = {k: v for k, v in _params("pin.initial").items() if k not in ("civility", "role")}
    body = render("pin.initial", "email", {**params, "form": "device"}, SECRET).body
    assert "Bonjour Abdelouahed Benabdeljalil El Idrissi," in body
    assert "السلام عليكم عبد الواحد" in body
    assert "Votre certificat de signature électronique (commune " in body


def test_the_changed_detail_agrees_in_french() -> None:
    base = {**_params("contact.changed"), "lang": "fr"}
    address = {**base, "what_fr": "adresse électronique"}
    mobile = {**base, "what_fr": "numéro de mobile", "what_ar": "رقم الهاتف"}
    email = render("contact.changed", "email", address).body
    assert "L'adresse électronique enregistrée pour vos notifications" in email
    assert "a été changée le" in email and "d'arriver à l'ancienne adresse" in email
    assert "Le numéro de mobile enregistré pour" in render("contact.changed", "email",
                                                           mobile).body
    text = render("contact.changed", "sms", mobile).body
    assert "votre numéro de mobile a été changé le" in text and "à l'ancien numéro" in text
    assert "a été changée" in render("contact.changed", "sms", address).body


def test_the_notices_queued_carry_the_civility_and_the_mandates_role(
        session: Session, clock: FrozenClock) -> None:
    contact = make_contact(session, clock)
    holder = make_holder(session, clock, contact=contact, civility="mrs",
                         role="vice_president")
    queued = notices.enqueue_expiry_warning(
        session, clock, holder=holder, contact=contact, serial="5ab1", threshold_days=30,
        not_after=clock.now() + timedelta(days=30), days_left=30)
    assert queued == 3
    rows = session.scalars(select(OutboxMessage).where(
        OutboxMessage.dedupe_key.like("expiry:5ab1:%")).order_by(OutboxMessage.id)).all()
    bodies = {(m.template, m.channel): render(m.template, m.channel, json.loads(m.params)).body
              for m in rows}
    assert "Bonjour Madame Karim Benali" in bodies[("expiry.holder", "email")]
    assert "en qualité de Vice-présidente du conseil de la commune" in \
        bodies[("expiry.holder", "email")]
    assert "بصفتكم نائبة رئيس مجلس الجماعة" in bodies[("expiry.holder", "email")]
    assert "de Madame Karim Benali, Vice-présidente du conseil" in \
        bodies[("expiry.contact", "email")]
    assert "Vice-président du" not in "".join(bodies.values())

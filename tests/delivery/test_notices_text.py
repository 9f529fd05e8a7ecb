"""The notices as a holder reads them: each SMS in one language (the holder's), the code
first, at most two billed segments with the longest names of the country; hosted and device
tokens get their own texts; counted things agree with their number (Arabic's six forms);
the glossary's words (jeton / جهاز التوقيع)."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest

from delivery import sms
from delivery.messages import TEMPLATES, arabic_form, counted, render

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
    return {k: values[k] for k in TEMPLATES[name].fields()}


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

"""Plain-value validation: CIN, phones, emails, tracking numbers, messages."""

from __future__ import annotations

import pytest

from core.errors import InvalidInput
from delivery.errors import InvalidTracking
from delivery.messages import TEMPLATES, render
from delivery.validation import (
    normalise_cin,
    normalise_email,
    normalise_phone,
    normalise_tracking,
    s10_check_digit,
)


@pytest.mark.parametrize(("raw", "expected"), [
    ("ab123456", "AB123456"), ("K12345", "K12345"), (" x 1 ", "X1"), ("BE654321", "BE654321"),
])
def test_cin_accepts_and_upper_cases(raw: str, expected: str) -> None:
    assert normalise_cin(raw) == expected


@pytest.mark.parametrize("raw", ["", "123456", "ABC123", "AB1234567", "AB", "A-12", "AB12X"])
def test_cin_refuses(raw: str) -> None:
    with pytest.raises(InvalidInput) as err:
        normalise_cin(raw)
    assert err.value.extras["field"] == "cin"


def test_phone_is_stored_e164_and_mobile_checked() -> None:
    assert normalise_phone("06 12 34 56 78", mobile=True, field="mobile") == "+212612345678"
    assert normalise_phone("+212 7 12 34 56 78", mobile=True, field="mobile") == \
        "+212712345678"
    assert normalise_phone("0522123456", mobile=False, field="phone") == "+212522123456"
    with pytest.raises(InvalidInput, match="not a mobile"):
        normalise_phone("0522123456", mobile=True, field="mobile")
    for bad in ("12", "not a number", "+212 1"):
        with pytest.raises(InvalidInput):
            normalise_phone(bad, mobile=True, field="mobile")


def test_email() -> None:
    assert normalise_email(" A.B@Example.MA ", field="email") == "A.B@example.ma"
    for bad in ("a@b", "no-at.example.ma", "a b@c.ma", "@c.ma"):
        with pytest.raises(InvalidInput):
            normalise_email(bad, field="email")


def test_tracking_numbers_are_upu_s10() -> None:
    assert s10_check_digit("12345678") == 5
    assert s10_check_digit("00000000") == 5  # 11 - 0 == 11 -> 5
    assert s10_check_digit("00000001") == 4  # weight 7: 11 - 7
    assert s10_check_digit("00000010") == 2  # weight 9: 11 - 9
    assert s10_check_digit("00000100") == 6  # weight 5: 11 - 5
    assert s10_check_digit("00010000") == 9  # weight 2: 11 - 2
    assert s10_check_digit("10000001") == 7  # 8 + 7 = 15 -> 11 - 4
    assert s10_check_digit("00000008") == 0  # 56 % 11 == 1 -> 10 -> 0
    assert normalise_tracking("ee 123456785 ma") == "EE123456785MA"
    with pytest.raises(InvalidTracking, match="check digit"):
        normalise_tracking("EE123456784MA")
    with pytest.raises(InvalidTracking):
        normalise_tracking("12345")


def test_templates_carry_the_holders_language_and_the_secret_only_where_asked() -> None:
    params = {"name_fr": "x", "name_ar": "y", "entity_fr": "e", "entity_ar": "ع",
              "form_fr": "f", "form_ar": "ف"}
    sms = render("pin.initial", "sms", params, "48213795")  # French when none is recorded
    assert sms.body.count("48213795") == 1 and "Changez-le" in sms.body
    assert "تغييره" not in sms.body
    sms = render("pin.initial", "sms", {**params, "lang": "ar"}, "48213795")
    assert sms.body.startswith("48213795") and "غيروه" in sms.body
    notice = render("pin.reset_notice", "email", {"name_fr": "a", "name_ar": "b",
                                                   "at": "2026-03-16 09:30",
                                                   "phone_tail": "5678"})
    assert "réinitialisé" in notice.body and "إعادة" in notice.body
    assert not TEMPLATES["pin.reset_notice"].needs_secret
    with pytest.raises(ValueError):
        render("pin.initial", "sms", {}, None)

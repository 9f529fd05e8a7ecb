"""Validation of the plain values the delivery package accepts: CIN, phones, emails, names,
courier tracking numbers. Each function returns the normalised value or raises the error
class it is given, naming the offending field in ``extras['field']``."""

from __future__ import annotations

import re

import phonenumbers

from core.errors import InvalidInput
from core.identifiers import CIN_PATTERN, CIN_RULE
from delivery.errors import InvalidTracking

# The one source of these rules: the API's schemas and its OpenAPI document take them from
# here (api/blueprints/*), so a body the document calls valid is one the domain accepts.

# The CIN rule itself (CIN_PATTERN) is core.identifiers', which pki checks too.
#: The same rule as a schema states it: letters in either case (:func:`normalise_cin`
#: upper-cases them).
CIN_SCHEMA_PATTERN = CIN_PATTERN.pattern.replace("[A-Z]", "[A-Za-z]")
#: A phone number as typed, before :func:`normalise_phone` parses it: 6 to 20 characters.
PHONE_MIN_LENGTH, PHONE_MAX_LENGTH = 6, 20
#: A courier tracking number as typed (spaces allowed), before :func:`normalise_tracking`
#: checks its UPU S10 form (:data:`TRACKING_PATTERN`).
TRACKING_MIN_LENGTH, TRACKING_MAX_LENGTH = 5, 20
_EMAIL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
TRACKING_PATTERN = re.compile(r"^([A-Z]{2})([0-9]{8})([0-9])([A-Z]{2})$")
_S10_WEIGHTS = (8, 6, 4, 2, 3, 5, 9, 7)
_MOBILE_TYPES = {phonenumbers.PhoneNumberType.MOBILE,
                 phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE}


def normalise_cin(raw: str, error: type[InvalidInput] = InvalidInput) -> str:
    """``ab123456`` → ``AB123456``; spaces are dropped. Refuses anything else."""
    value = "".join(str(raw).split()).upper()
    if not CIN_PATTERN.match(value):
        raise error(f"a CIN is {CIN_RULE}", field="cin")
    return value


def normalise_phone(raw: str, *, mobile: bool, field: str,
                    error: type[InvalidInput] = InvalidInput) -> str:
    """Parse a phone number (Moroccan by default) with ``phonenumbers``; return E.164."""
    try:
        number = phonenumbers.parse(str(raw), "MA")
    except phonenumbers.NumberParseException as exc:
        raise error(f"{field}: not a phone number", field=field) from exc
    if not phonenumbers.is_valid_number(number):
        raise error(f"{field}: not a valid phone number", field=field)
    if mobile and phonenumbers.number_type(number) not in _MOBILE_TYPES:
        raise error(f"{field}: not a mobile number (SMS must reach it)", field=field)
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalise_email(raw: str, *, field: str, error: type[InvalidInput] = InvalidInput) -> str:
    value = str(raw).strip()
    if len(value) > 254 or not _EMAIL.match(value):
        raise error(f"{field}: not an email address", field=field)
    local, _, domain = value.rpartition("@")
    return f"{local}@{domain.lower()}"


def require_text(raw: str, *, field: str, max_length: int = 200,
                 error: type[InvalidInput] = InvalidInput) -> str:
    value = " ".join(str(raw).split())
    if not value:
        raise error(f"{field} is required", field=field)
    if len(value) > max_length:
        raise error(f"{field} is longer than {max_length} characters", field=field)
    return value


def s10_check_digit(serial: str) -> int:
    """The UPU S10 check digit of an eight-digit serial number."""
    total = sum(int(d) * w for d, w in zip(serial, _S10_WEIGHTS, strict=True))
    check = 11 - total % 11
    return {10: 0, 11: 5}.get(check, check)


def normalise_tracking(raw: str) -> str:
    """A courier (Amana, Barid Al-Maghrib) item number in the UPU S10 format:
    two letters, eight digits, a check digit, the two-letter country (``EE123456785MA``)."""
    value = "".join(str(raw).split()).upper()
    match = TRACKING_PATTERN.match(value)
    if not match:
        raise InvalidTracking("a tracking number has two letters, nine digits and a country "
                              "code (UPU S10, e.g. EE123456785MA)", field="tracking_number")
    if s10_check_digit(match.group(2)) != int(match.group(3)):
        raise InvalidTracking("the tracking number's check digit is wrong",
                              field="tracking_number")
    return value

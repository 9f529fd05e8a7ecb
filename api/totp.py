"""Time-based one-time passwords (RFC 6238 over RFC 4226): HMAC-SHA1, 30-second steps,
six digits, the form every authenticator application reads from an ``otpauth://`` URI.

Pure functions, no storage: :mod:`api.accounts` keeps the secret sealed and the last step
used. :func:`match` accepts the current step and one either side (clocks drift), and never
a step at or before ``last_step``, so a code cannot be replayed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import struct
from datetime import datetime
from urllib.parse import quote, urlencode

STEP_SECONDS = 30
DIGITS = 6
#: Steps accepted either side of the current one.
DRIFT = 1
SECRET_BYTES = 20  # 160 bits, RFC 4226's recommendation for HMAC-SHA1


def new_secret() -> bytes:
    return secrets.token_bytes(SECRET_BYTES)


def to_base32(secret: bytes) -> str:
    """The secret as authenticator applications take it typed in (no padding)."""
    return base64.b32encode(secret).decode("ascii").rstrip("=")


def step_of(at: datetime) -> int:
    return int(at.timestamp()) // STEP_SECONDS


def code_at(secret: bytes, step: int) -> str:
    """RFC 4226 HOTP of ``step``: dynamic truncation of HMAC-SHA1, ``DIGITS`` digits."""
    mac = hmac.new(secret, struct.pack(">Q", step), hashlib.sha1).digest()
    offset = mac[-1] & 0x0F
    value = struct.unpack(">I", mac[offset:offset + 4])[0] & 0x7FFFFFFF
    return str(value % 10 ** DIGITS).zfill(DIGITS)


def match(secret: bytes, code: str, at: datetime, last_step: int | None) -> int | None:
    """The step ``code`` belongs to (within ±``DRIFT`` of ``at``, after ``last_step``), or
    None. Compared in constant time."""
    code = "".join(code.split())
    if len(code) != DIGITS or not code.isdigit():
        return None
    now = step_of(at)
    found = None
    for step in range(now - DRIFT, now + DRIFT + 1):
        if last_step is not None and step <= last_step:
            continue
        if hmac.compare_digest(code_at(secret, step), code) and found is None:
            found = step
    return found


def uri(secret: bytes, account: str, issuer: str = "Tawqi") -> str:
    """The ``otpauth://totp/...`` URI a QR code carries."""
    label = quote(f"{issuer}:{account}", safe=":@")
    query = urlencode({"secret": to_base32(secret), "issuer": issuer, "algorithm": "SHA1",
                       "digits": DIGITS, "period": STEP_SECONDS})
    return f"otpauth://totp/{label}?{query}"

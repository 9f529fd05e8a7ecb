"""Where a secret given in clear (a code, a PIN, a TOTP secret) could have been kept: every
column of every row of the database, and the captured log. Used by the tests that check a
secret is stored only hashed or sealed, and never logged."""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.db import Base


def _pattern(value: str | bytes) -> re.Pattern[bytes]:
    raw = value.encode() if isinstance(value, str) else value
    # Short numeric codes (six digits) would match inside a time or a hex digest by chance:
    # they count only standing alone.
    if raw.isdigit() and len(raw) < 12:
        return re.compile(rb"(?<![0-9A-Za-z])" + re.escape(raw) + rb"(?![0-9A-Za-z])")
    return re.compile(re.escape(raw))


def _as_bytes(value: object) -> bytes:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    return str(value).encode()


def places_holding(session: Session, value: str | bytes) -> list[str]:
    """``table.column`` of each stored value that contains ``value``."""
    pattern = _pattern(value)
    found = []
    for table in Base.metadata.sorted_tables:
        for row in session.execute(select(table)).mappings():
            found.extend(f"{table.name}.{column}" for column, cell in row.items()
                         if cell is not None and pattern.search(_as_bytes(cell)))
    return found


def assert_kept_secret(session: Session, log_text: str, *values: str | bytes) -> None:
    """None of ``values`` is in the database nor in ``log_text``."""
    for value in values:
        assert places_holding(session, value) == [], f"stored in clear: {value!r}"
        assert not _pattern(value).search(log_text.encode()), f"logged in clear: {value!r}"

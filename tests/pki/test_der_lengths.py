"""pki.der: asn1crypto no longer takes a definite DER length ending in 0x80 (384 bytes is
``82 01 80``) for BER's indefinite length, which made it re-encode the whole value at each
dump, doubling the work at each level (a B-T signature's time-stamp token took seconds to
minutes to package, issue 16). Real indefinite lengths are still re-encoded as DER."""

from __future__ import annotations

import pytest
from asn1crypto import core

import pki.signer  # noqa: F401  (installs the guard, as every signing path does)
from pki.der import indefinite


class Box(core.Sequence):
    _fields = [("data", core.OctetString)]


class Outer(core.Sequence):
    _fields = [("inner", Box), ("number", core.Integer)]


@pytest.mark.parametrize(("header", "expected"), [
    (b"\x30\x80", True),                      # indefinite
    (b"\x30\x81\x80", False),                 # 128 bytes
    (b"\x30\x82\x01\x80", False),             # 384 bytes
    (b"\xa0\x82\x01\x84\x30\x82\x01\x80", False),  # explicit tag, then 384 bytes
    (b"\xa0\x80\x30\x80", True),
    (b"\x30\x7f", False),
    (b"\x1f\x81\x00\x80", True),              # high tag number, indefinite
    (b"\x1f\x81\x00\x81\x80", False),
])
def test_indefinite_reads_the_last_length(header: bytes, expected: bool) -> None:
    assert indefinite(header) is expected


def test_a_definite_length_ending_in_0x80_is_not_re_encoded(
        monkeypatch: pytest.MonkeyPatch) -> None:
    payload = bytes(range(256)) + bytes(124)  # 380 bytes: the box holds 384 (82 01 80)
    der = b"\x30\x82\x01\x80" + b"\x04\x82\x01\x7c" + payload
    loaded = Box.load(der)
    assert loaded.dump() == der
    encodings: list[str] = []
    original = Box._set_contents

    def counted(self: Box, force: bool = False) -> None:
        encodings.append("box")
        original(self, force)

    monkeypatch.setattr(Box, "_set_contents", counted)
    outer = Outer({"inner": Box.load(der), "number": 7})
    assert outer.dump() == b"\x30\x82\x01\x87" + der + b"\x02\x01\x07"
    assert outer.dump() == b"\x30\x82\x01\x87" + der + b"\x02\x01\x07"
    assert encodings == []  # the box's octets were reused, not encoded again


def test_an_indefinite_length_is_still_written_as_der() -> None:
    assert Box.load(b"\x30\x80\x04\x01\x05\x00\x00").dump() == b"\x30\x03\x04\x01\x05"

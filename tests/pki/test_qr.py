"""The stamp's QR code: segno's own code, its data mask chosen by pki.signing.qr.

The judge is segno's full encoder (mask evaluation included): the same links must give the
same modules, across the versions a link can need."""

from __future__ import annotations

import random
import secrets

import pytest
import segno

from pki.signing.qr import _alignment_centres, _format_bits, qr_rows

# Version 2..40 alignment centres of ISO/IEC 18004 annex E (a few rows of the table).
ANNEX_E = {2: [6, 18], 7: [6, 22, 38], 14: [6, 26, 46, 66], 32: [6, 34, 60, 86, 112, 138],
           36: [6, 24, 50, 76, 102, 128, 154], 40: [6, 30, 58, 86, 114, 142, 170]}


def segno_rows(link: str) -> tuple[bytes, ...]:
    return tuple(bytes(row) for row in segno.make_qr(link, error="m",
                                                     boost_error=False).matrix)


def test_status_links_give_segnos_code() -> None:
    """The links the stamps carry (a status URL and 128 random bits): 200 of them."""
    for _ in range(200):
        link = "https://pki.tawqi.ma/s/" + secrets.token_urlsafe(16)
        assert qr_rows(link) == segno_rows(link)


@pytest.mark.parametrize("length", [1, 10, 30, 60, 120, 200, 400, 800])
def test_every_size_gives_segnos_code(length: int) -> None:
    """Versions 1 to about 25 (with version information from 7 on), several links each."""
    generator = random.Random(length)
    for _ in range(6):
        link = "".join(generator.choice("abcdefghijklmnopqrstuvwxyz0123456789/:.-_")
                       for _ in range(length))
        assert qr_rows(link) == segno_rows(link)


def test_alignment_centres_follow_annex_e() -> None:
    assert _alignment_centres(1) == []
    for version, centres in ANNEX_E.items():
        assert _alignment_centres(version) == centres


def test_format_bits_follow_annex_c() -> None:
    """Level M, masks 0 and 7 (ISO/IEC 18004 table C.1)."""
    assert _format_bits(0) == 0b101010000010010
    assert _format_bits(7) == 0b100101010100000


def test_the_chosen_mask_is_not_always_the_first() -> None:
    """The evaluation really chooses: over many links, several masks are used."""
    masks = set()
    for _ in range(60):
        link = "https://pki.tawqi.ma/s/" + secrets.token_urlsafe(16)
        masks.add(segno.make_qr(link, error="m", boost_error=False).mask)
        assert qr_rows(link) == segno_rows(link)
    assert len(masks) > 3

"""How many billed segments an SMS takes (3GPP TS 23.038 / 23.040).

A text made only of the GSM 7-bit default alphabet (and its extension table, whose
characters count twice) fits 160 septets in one segment, 153 per segment when split; any
other character sends the whole text as UCS-2: 70 UTF-16 units in one segment, 67 per
segment when split. Our notices are held to :data:`MAX_SEGMENTS`.
"""

from __future__ import annotations

import math

MAX_SEGMENTS = 2

_GSM_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà")
_GSM_EXTENSION = set("^{}\\[~]|€\f")


def encoding(text: str) -> str:
    """``gsm7`` when every character is in the GSM alphabet, else ``ucs2``."""
    return "gsm7" if all(ch in _GSM_BASIC or ch in _GSM_EXTENSION for ch in text) else "ucs2"


def units(text: str) -> int:
    """Septets (GSM-7) or UTF-16 code units (UCS-2) the text takes."""
    if encoding(text) == "gsm7":
        return sum(2 if ch in _GSM_EXTENSION else 1 for ch in text)
    return len(text.encode("utf-16-le")) // 2


def segments(text: str) -> int:
    """Billed segments: 1 up to 160 / 70 units, then 153 / 67 per segment."""
    size = units(text)
    single, multi = (160, 153) if encoding(text) == "gsm7" else (70, 67)
    return 1 if size <= single else math.ceil(size / multi)

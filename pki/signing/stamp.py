"""The visible signature stamp: who signed, as what, for which commune and when, in French
and in Arabic.

The stamp is a pyHanko stamp style (:class:`BilingualStampStyle`), so pyHanko draws it as
the appearance of the signature field. Text goes through pyHanko's OpenType font engine
(HarfBuzz shaping, embedded font subsets with a ToUnicode map), in the Amiri typeface from
Debian's ``fonts-hosny-amiri``, which covers both scripts.

Layout: one row per fact, the French text left-aligned in the left half, the Arabic text
right-aligned in the right half. HarfBuzz shapes one direction per run and does no
bidirectional reordering, so an Arabic line is cut into runs first (:func:`bidi_runs`): runs
of Arabic letters are shaped right to left, runs of digits and Latin letters (a date, a
time) left to right, and the runs are laid out right to left. This is the part of the
Unicode bidirectional algorithm our texts need (no embeddings, no mirrored brackets).

A stamp with a ``link`` (the signature's public status page) carries it as a QR code at its
right side, drawn as filled rectangles on a white square with a quiet zone; the two text
columns share the rest of the box.
"""

from __future__ import annotations

import io
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

import uharfbuzz as hb
from pyhanko.pdf_utils import layout
from pyhanko.pdf_utils.content import ResourceType
from pyhanko.pdf_utils.font.opentype import GlyphAccumulator
from pyhanko.pdf_utils.generic import pdf_name
from pyhanko.pdf_utils.writer import BasePdfFileWriter
from pyhanko.stamp.base import BaseStamp, BaseStampStyle

from core.errors import ConfigurationError, InvalidInput
from pki.signing.fontcache import CachedGlyphAccumulator
from pki.signing.qr import qr_rows

#: Where Debian's fonts-hosny-amiri installs the typeface.
DEFAULT_FONT_DIR = Path("/usr/share/fonts/opentype/fonts-hosny-amiri")
REGULAR_FONT = "Amiri-Regular.ttf"
BOLD_FONT = "Amiri-Bold.ttf"

#: Dates on the stamp are shown in Morocco's legal time.
STAMP_TIMEZONE = ZoneInfo("Africa/Casablanca")

Lang = Literal["fr", "ar"]

_TEXT_LIMIT = 120
_LINK_LIMIT = 200
#: The QR code's quiet zone, in modules (its error correction level is M: pki.signing.qr).
QR_QUIET = 2
# Separators that keep a number together inside right-to-left text (16/03/2026, 09:30).
_NUMBER_SEPARATORS = "/:.,-"


class InvalidStamp(InvalidInput):
    type = "pki-invalid-stamp"
    title = "Invalid signature stamp"


def font_paths(font_dir: Path | str | None = None) -> tuple[str, str]:
    """The regular and bold Amiri font files, or :class:`ConfigurationError`."""
    base = Path(font_dir) if font_dir else DEFAULT_FONT_DIR
    regular, bold = base / REGULAR_FONT, base / BOLD_FONT
    for path in (regular, bold):
        if not path.is_file():
            raise ConfigurationError(
                f"stamp font {path} not found (install fonts-hosny-amiri or set "
                "TAWQI_STAMP_FONT_DIR)", font=str(path))
    return str(regular), str(bold)


#: What the stamp can write: Latin with French accents, Arabic, common punctuation.
_STAMP_UNICODES = [*range(0x20, 0x7F), *range(0xA0, 0x180), *range(0x600, 0x700),
                   *range(0x2000, 0x2070)]
#: The OpenType features HarfBuzz needs to shape those scripts properly (Arabic joining
#: forms, required ligatures such as lam-alef, mark positioning, kerning).
_STAMP_FEATURES = ["ccmp", "locl", "init", "medi", "fina", "isol", "rlig", "rclt", "liga",
                   "mark", "mkmk", "kern", "curs"]


@lru_cache(maxsize=8)
def _font_bytes(path: str) -> bytes:
    """The font cut down once per process to what a stamp can use (Amiri has thousands of
    glyphs and stylistic lookups; subsetting it for every signature took most of the
    signing time)."""
    from fontTools import subset
    from fontTools.ttLib import TTFont

    options = subset.Options()
    options.layout_features = _STAMP_FEATURES
    options.name_IDs = ["*"]
    options.notdef_outline = True
    options.glyph_names = True
    options.hinting = False
    font = TTFont(path)
    subsetter = subset.Subsetter(options)
    subsetter.populate(unicodes=_STAMP_UNICODES)
    subsetter.subset(font)
    out = io.BytesIO()
    font.save(out)
    return out.getvalue()


@lru_cache(maxsize=8)
def _outline_bytes(path: str) -> bytes:
    """:func:`_font_bytes` without its layout tables: the same glyphs under the same IDs,
    for the PDF (pyHanko drops those tables from the embedded subset anyway; shaping reads
    the full font). Subsetting this per signature is several times faster."""
    from fontTools.ttLib import TTFont

    font = TTFont(io.BytesIO(_font_bytes(path)))
    for tag in ("GSUB", "GPOS", "GDEF", "kern"):
        if tag in font:
            del font[tag]
    out = io.BytesIO()
    font.save(out)
    return out.getvalue()


@lru_cache(maxsize=8)
def _shaping_face(path: str) -> hb.Face:
    return hb.Face(_font_bytes(path))


def warm_fonts(font_dir: Path | str | None = None) -> None:
    """Prepare the stamp fonts now (about a second, once per process) rather than during
    the first signature."""
    for path in font_paths(font_dir):
        _outline_bytes(path)
        _shaping_face(path)


def _clean(value: str, name: str) -> str:
    if not isinstance(value, str):
        raise InvalidStamp(f"{name} must be text", field=name)
    text = unicodedata.normalize("NFC", " ".join(value.split()))
    if not text:
        raise InvalidStamp(f"{name} must not be empty", field=name)
    if len(text) > _TEXT_LIMIT:
        raise InvalidStamp(f"{name} has more than {_TEXT_LIMIT} characters", field=name)
    if any(unicodedata.category(ch) in {"Cc", "Cs", "Co", "Cn"} for ch in text):
        raise InvalidStamp(f"{name} contains characters that cannot be printed", field=name)
    return text


@dataclass(frozen=True)
class StampText:
    """What the stamp says, in both languages. Validated on construction."""

    name_fr: str
    name_ar: str
    title_fr: str
    title_ar: str
    organisation_fr: str
    organisation_ar: str
    signed_at: datetime
    #: The signature's public status page, drawn as a QR code (None: no QR code).
    link: str | None = None

    def __post_init__(self) -> None:
        for name in ("name_fr", "name_ar", "title_fr", "title_ar", "organisation_fr",
                     "organisation_ar"):
            object.__setattr__(self, name, _clean(getattr(self, name), name))
        if not isinstance(self.signed_at, datetime) or self.signed_at.tzinfo is None:
            raise InvalidStamp("signed_at must be a timezone-aware datetime",
                               field="signed_at")
        if self.link is not None and (
                not isinstance(self.link, str) or len(self.link) > _LINK_LIMIT
                or not self.link.isascii() or not self.link.startswith(("http://", "https://"))
                or any(ch.isspace() for ch in self.link)):
            raise InvalidStamp(f"link must be an http(s) URL of at most {_LINK_LIMIT} "
                               "characters", field="link")

    def rows(self) -> list[tuple[StampLine, StampLine]]:
        local = self.signed_at.astimezone(STAMP_TIMEZONE)
        day, hour = local.strftime("%d/%m/%Y"), local.strftime("%H:%M")
        hour = f"{hour} {utc_offset(local)}"  # Morocco moves between UTC+1 and UTC+0
        return [
            (StampLine("Signé électroniquement par", "fr", small=True),
             StampLine("موقع إلكترونيا من طرف", "ar", small=True)),
            (StampLine(self.name_fr, "fr", bold=True), StampLine(self.name_ar, "ar", bold=True)),
            (StampLine(self.title_fr, "fr"), StampLine(self.title_ar, "ar")),
            (StampLine(self.organisation_fr, "fr"), StampLine(self.organisation_ar, "ar")),
            (StampLine(f"Le {day} à {hour}", "fr", small=True),
             StampLine(f"بتاريخ {day} على الساعة {hour}", "ar", small=True)),
        ]


def utc_offset(moment: datetime) -> str:
    """``UTC+01:00``: the offset the stamp states next to a local time."""
    offset = moment.utcoffset()
    minutes = int(offset.total_seconds() // 60) if offset is not None else 0
    sign = "+" if minutes >= 0 else "-"
    return f"UTC{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


@dataclass(frozen=True)
class StampLine:
    text: str
    lang: Lang
    bold: bool = False
    small: bool = False


# --------------------------------------------------------------------------- QR code


def qr_matrix(link: str) -> list[list[bool]]:
    """The modules of ``link``'s QR code, top row first, True for dark; no quiet zone."""
    return [[bool(v) for v in row] for row in _qr_rows(link)]


def _qr_rows(link: str) -> tuple[bytes, ...]:
    """The rows of ``link``'s QR code as bytes, 0 for a light module, else dark: segno's
    code, its mask chosen faster (:mod:`pki.signing.qr`)."""
    return qr_rows(link)


def qr_square(width: float, height: float, margin: float) -> tuple[float, float, float]:
    """``(x, y, side)`` of the QR code's white square (quiet zone included) in a stamp of
    ``width`` x ``height``: as tall as the box allows, at most a third of its width, on the
    right, vertically centred."""
    side = min(height - 2 * margin, width / 3)
    return width - margin - side, (height - side) / 2, side


_DARK_RUN = re.compile(rb"[^\x00]+")  # a run of dark modules (any value but 0)


def _qr_ops(link: str, x: float, y: float, side: float) -> bytes:
    """The QR code as PDF operators: a white square, then one rectangle per horizontal run
    of dark modules, filled black in one go. The rectangles are written in module units
    (integers) under a matrix that scales them to the square: the same drawing as in
    points, written several times faster and shorter."""
    rows = _qr_rows(link)
    count = len(rows)
    module = side / (count + 2 * QR_QUIET)
    rects = []
    for r, row in enumerate(rows):
        bottom = count - 1 - r
        for run in _DARK_RUN.finditer(row):
            rects.append(b"%d %d %d 1 re" % (run.start(), bottom, run.end() - run.start()))
    return b" ".join([b"q 1 1 1 rg %.3f %.3f %.3f %.3f re f 0 0 0 rg" % (x, y, side, side),
                      b"%.5f 0 0 %.5f %.3f %.3f cm" % (module, module, x + QR_QUIET * module,
                                                       y + QR_QUIET * module),
                      *rects, b"f Q"])


# --------------------------------------------------------------------------- bidi


def _strong_direction(ch: str) -> str | None:
    """'rtl', 'ltr' or None (neutral / weak) for one character."""
    kind = unicodedata.bidirectional(ch)
    if kind in {"R", "AL"}:
        return "rtl"
    if kind in {"L", "EN", "AN"}:
        return "ltr"
    return None


def bidi_runs(text: str) -> list[tuple[str, str]]:
    """Split right-to-left text into ``(direction, text)`` runs in logical order.

    Letters of right-to-left scripts make ``rtl`` runs; digits and Latin letters ``ltr``
    runs; a separator between two digits (``/`` ``:`` ``.``) stays in its number; other
    neutral characters (spaces, punctuation) take the direction of their neighbours when
    both agree, the paragraph's (``rtl``) otherwise.
    """
    directions: list[str | None] = [_strong_direction(ch) for ch in text]
    for i, ch in enumerate(text):
        if (directions[i] is None and ch in _NUMBER_SEPARATORS and 0 < i < len(text) - 1
                and text[i - 1].isdigit() and text[i + 1].isdigit()):
            directions[i] = "ltr"
    resolved: list[str] = []
    for i, found in enumerate(directions):
        if found is not None:
            resolved.append(found)
            continue
        before = next((d for d in reversed(directions[:i]) if d is not None), "rtl")
        after = next((d for d in directions[i + 1:] if d is not None), "rtl")
        resolved.append(before if before == after else "rtl")
    runs: list[tuple[str, str]] = []
    for ch, direction in zip(text, resolved, strict=True):
        if runs and runs[-1][0] == direction:
            runs[-1] = (direction, runs[-1][1] + ch)
        else:
            runs.append((direction, ch))
    return runs


# --------------------------------------------------------------------------- style


@dataclass(frozen=True)
class BilingualStampStyle(BaseStampStyle):
    """A pyHanko stamp style drawing :class:`StampText` in French and Arabic."""

    text: StampText | None = None
    regular_font: str = ""
    bold_font: str = ""
    font_size: float = 9.0
    min_font_size: float = 4.0
    small_ratio: float = 0.8
    line_spacing: float = 1.3
    margin: float = 6.0
    column_gap: float = 10.0
    text_color: tuple[float, float, float] = (0.05, 0.12, 0.25)
    rule_color: tuple[float, float, float] = (0.55, 0.6, 0.7)
    border_width: int = 1
    border_color: tuple[float, float, float] | None = (0.1, 0.3, 0.45)
    #: Paint the box white first: set when the stamp must sit over page content.
    opaque: bool = False
    #: Reuse embedded font subsets across signatures (pki.signing.fontcache); False makes
    #: a fresh subset each time, as pyHanko does (the same rendering, slower).
    reuse_font_subsets: bool = True

    @classmethod
    def for_text(cls, text: StampText, font_dir: Path | str | None = None,
                 **options: Any) -> BilingualStampStyle:
        regular, bold = font_paths(font_dir)
        return cls(text=text, regular_font=regular, bold_font=bold, **options)

    def create_stamp(self, writer: BasePdfFileWriter, box: layout.BoxConstraints,
                     text_params: dict[str, Any]) -> BilingualStamp:
        if self.text is None:
            raise InvalidStamp("the stamp has no text")
        return BilingualStamp(writer, self, box)


class _Fonts:
    """One font engine per face (regular, bold) on one writer, each an embedded subset of
    Amiri. The script, direction and language are set for each run before it is shaped;
    an engine is only created when a line uses its face."""

    def __init__(self, stamp: BilingualStamp, style: BilingualStampStyle) -> None:
        self._stamp = stamp
        self._style = style
        self._engines: dict[bool, tuple[str, GlyphAccumulator]] = {}

    def get(self, bold: bool, direction: str) -> tuple[str, GlyphAccumulator]:
        found = self._engines.get(bold)
        if found is None:
            path = self._style.bold_font if bold else self._style.regular_font
            writer = self._stamp.writer
            if writer is None:  # pragma: no cover - pyHanko always gives the stamp a writer
                raise InvalidStamp("the stamp has no PDF writer")
            # The engine embeds (subsets) the outlines-only font; HarfBuzz shapes with the
            # full one, whose glyph IDs are the same.
            engine: GlyphAccumulator
            if self._style.reuse_font_subsets:
                # The subset is made once per glyph set (pki.signing.fontcache); every
                # digit is in it, so the changing date line does not change the set.
                engine = CachedGlyphAccumulator(
                    writer=writer, font_bytes=_outline_bytes(path), cache_key=path,
                    font_size=self._style.font_size,
                    shaping_font=hb.Font(_shaping_face(path)))
                engine.prime()
            else:
                engine = GlyphAccumulator(writer=writer,
                                          font_handle=io.BytesIO(_outline_bytes(path)),
                                          font_size=self._style.font_size)
                engine.hb_font = hb.Font(_shaping_face(path))
            name = f"F{len(self._engines) + 1}"
            found = self._engines[bold] = (name, engine)
            self._stamp.set_resource(category=ResourceType.FONT, name=pdf_name("/" + name),
                                     value=engine.as_resource())
        name, engine = found
        rtl = direction == "rtl"
        engine.ot_script_tag = "arab" if rtl else "latn"
        engine.writing_direction = direction
        engine.bcp47_lang_code = "ar" if rtl else "fr"
        return found


@dataclass
class _Run:
    font: str
    engine: GlyphAccumulator
    text: str
    em_width: float
    direction: str
    bold: bool


class BilingualStamp(BaseStamp):
    """Renders a :class:`BilingualStampStyle` in a fixed box (the signature field)."""

    style: BilingualStampStyle

    def __init__(self, writer: BasePdfFileWriter, style: BilingualStampStyle,
                 box: layout.BoxConstraints | None) -> None:
        super().__init__(writer=writer, style=style, box=box)
        self._fonts = _Fonts(self, style)

    def _runs(self, line: StampLine) -> list[_Run]:
        """The runs of ``line`` in visual order, left to right, measured in em."""
        logical = [("ltr", line.text)] if line.lang == "fr" else bidi_runs(line.text)
        runs = []
        for direction, text in logical:
            font, engine = self._fonts.get(line.bold, direction)
            shaped = engine.shape(text)
            runs.append(_Run(font, engine, text, shaped.x_advance, direction, line.bold))
        if line.lang == "ar":
            runs.reverse()
        return runs

    def _size_of(self, line: StampLine, base: float) -> float:
        return base * self.style.small_ratio if line.small else base

    def _render_inner_content(self) -> list[bytes]:
        style = self.style
        text = style.text
        if text is None:  # pragma: no cover - create_stamp checks it
            raise InvalidStamp("the stamp has no text")
        width, height = self.box.width, self.box.height
        rows = [(self._runs(fr), self._runs(ar), fr, ar) for fr, ar in text.rows()]
        # The text's width: the whole box, or what the QR code leaves of it.
        text_width: float = width
        qr = None
        if text.link is not None:
            qr = qr_square(width, height, style.margin)
            text_width = qr[0]

        # The largest font size (at most style.font_size) at which every row fits.
        column = (text_width - 2 * style.margin - style.column_gap) / 2
        size = style.font_size
        for fr_runs, ar_runs, fr, ar in rows:
            for runs, line in ((fr_runs, fr), (ar_runs, ar)):
                em = sum(r.em_width for r in runs) * (style.small_ratio if line.small else 1)
                if em > 0:
                    size = min(size, column / em)
        line_units = sum((style.small_ratio if fr.small else 1.0) for *_, fr, _ in rows)
        size = min(size, (height - 2 * style.margin) / (line_units * style.line_spacing))
        if size < style.min_font_size:
            raise InvalidStamp("the stamp text does not fit in the signature box",
                               width=round(width), height=round(height))

        ops: list[bytes] = []
        if style.opaque:
            inset = style.border_width
            ops.append(b"q 1 1 1 rg %g %g %g %g re f Q" % (
                inset, inset, width - 2 * inset, height - 2 * inset))
        ops += [b"q", b"%g %g %g rg" % style.text_color]
        total = line_units * size * style.line_spacing
        y = height - (height - total) / 2
        for fr_runs, ar_runs, fr, ar in rows:
            line_size = self._size_of(fr, size)
            y -= line_size * style.line_spacing
            baseline = y + line_size * (style.line_spacing - 1) / 2 + line_size * 0.2
            ops.append(self._line(fr_runs, line_size, style.margin, baseline))
            ar_size = self._size_of(ar, size)
            ar_width = sum(r.em_width for r in ar_runs) * ar_size
            ops.append(self._line(ar_runs, ar_size, text_width - style.margin - ar_width,
                                  baseline, rtl=True))
        ops.append(b"Q")
        # A thin rule between the two columns.
        middle = text_width / 2
        ops.append(b"q %g %g %g RG 0.4 w %g %g m %g %g l S Q" % (
            *style.rule_color, middle, style.margin, middle, height - style.margin))
        if qr is not None and text.link is not None:
            ops.append(_qr_ops(text.link, *qr))
        return ops

    def _line(self, runs: Sequence[_Run], size: float, x: float, y: float,
              rtl: bool = False) -> bytes:
        """One line of ``runs`` (in visual order, left to right) starting at ``x``.

        Each run is marked with its text in logical order (``/ActualText``, ISO 32000-1
        14.9.4, written by pyHanko's font engine), and the runs of a right-to-left line
        are written in logical order too, each placed at its visual position: text
        extraction and screen readers read the line as it is meant, not as it is drawn
        (an Arabic date line would otherwise come out with its parts swapped)."""
        placed = []
        for run in runs:
            placed.append((x, run))
            x += run.em_width * size
        if rtl:
            placed.reverse()
        parts = []
        for left, run in placed:
            self._fonts.get(run.bold, run.direction)  # this run's script and direction
            # pyHanko types font_size as int; its positioning arithmetic takes any number.
            run.engine.font_size = size  # type: ignore[assignment]
            shaped = run.engine.shape(run.text)
            parts += [b"BT", b"%g %g Td" % (left, y),
                      b"/%s %g Tf" % (run.font.encode("ascii"), size), shaped.graphics_ops,
                      b"ET"]
        return b" ".join(parts)

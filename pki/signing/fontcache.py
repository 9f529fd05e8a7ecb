"""Embedded font subsets of the stamp, made once and reused across signatures.

pyHanko's :class:`GlyphAccumulator` subsets its font and compiles the subset again for every
PDF it writes: parsing the glyphs, building the ``glyf`` table, compressing it. For one
holder's stamp the glyphs are always the same, except the date line's digits; so
:class:`CachedGlyphAccumulator` is first given every digit and date separator
(:data:`PRIMED_TEXT`) and keeps the compressed subset of each glyph set it has written (by
font file and glyph IDs; glyph IDs are kept as they are in the font, so the CIDs in the
content stream stay the same). The next signature with the same set writes those bytes as
they are: the same font program, the same widths and ToUnicode map, the same page.
"""

from __future__ import annotations

import io
import threading
import zlib
from typing import Any

from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.font.api import FontEngine
from pyhanko.pdf_utils.font.opentype import CIDFontType2, GlyphAccumulator, _read_ps_name
from pyhanko.pdf_utils.generic import pdf_name

from core.memo import Memo

#: Text shaped into every engine before its real lines: the date line then adds no glyph.
PRIMED_TEXT = "0123456789/:.,-"

#: Compressed subsets kept per process (one per holder's stamp face, a few tens of kB each).
MAX_ENTRIES = 256

_subsets: Memo[tuple[str, frozenset[int]], bytes] = Memo(MAX_ENTRIES)
_lock = threading.Lock()  # the parsed fonts (_parsed)


def cache_size() -> int:
    return len(_subsets)


def clear() -> None:
    _subsets.clear()
    with _lock:
        _parsed.clear()


class _CachedCIDFont(CIDFontType2):
    """A TrueType CID font whose ``FontFile2`` is the cached compressed subset."""

    compressed: bytes | None = None

    def set_font_file(self, writer: Any) -> Any:
        if self.compressed is None:  # pragma: no cover - the accumulator always sets it
            return super().set_font_file(writer)
        stream = generic.StreamObject(
            dict_data={pdf_name("/Filter"): pdf_name("/FlateDecode")},
            encoded_data=self.compressed)
        ref = writer.add_object(stream)
        self._font_descriptor[pdf_name("/FontFile2")] = ref
        return ref


class _ParsedFont:
    """One parsed font file, shared read-only by every engine of the process: the tables an
    engine reads (names, metrics, cmap) are decoded once, under a lock, at creation."""

    def __init__(self, data: bytes) -> None:
        from fontTools.ttLib import TTFont

        self.data = data
        self.tt = TTFont(io.BytesIO(data))
        for tag in ("head", "hhea", "OS/2", "post", "name", "cmap", "hmtx", "maxp"):
            self.tt[tag]
        self.glyph_set = self.tt.getGlyphSet(preferCFF=True)
        self.ps_name = _read_ps_name(self.tt)
        self.reverse_cmap = self.tt["cmap"].buildReversed()
        self.units_per_em = self.tt["head"].unitsPerEm


_parsed: dict[str, _ParsedFont] = {}


def _parsed_font(key: str, data: bytes) -> _ParsedFont:
    with _lock:
        found = _parsed.get(key)
        if found is None or found.data is not data:
            found = _parsed[key] = _ParsedFont(data)
        return found


class CachedGlyphAccumulator(GlyphAccumulator):
    """A :class:`GlyphAccumulator` for a TrueType font (``cache_key``: its file) whose
    embedded subset is made once per glyph set and process, and whose font is parsed once
    per process.

    It sets up the same state as pyHanko's constructor (pyHanko 0.38, pinned) but reads the
    shared parsed font instead of parsing the file again; a subset, when one must be made,
    is cut from a fresh copy (fontTools subsets in place)."""

    def __init__(self, *, writer: Any, font_bytes: bytes, cache_key: str,
                 font_size: float, shaping_font: Any) -> None:
        parsed = _parsed_font(cache_key, font_bytes)
        FontEngine.__init__(self, writer, parsed.ps_name, embedded_subset=True,
                            font_size=font_size)  # type: ignore[arg-type]
        self._parsed = parsed
        self._cache_key = cache_key
        self.hb_font = shaping_font
        self.tt = parsed.tt
        self._font_ref = writer.allocate_placeholder()
        self.cff_charset = None
        self.use_raw_gids = True
        if "CFF " in parsed.tt:
            raise ValueError("only TrueType outlines are cached")
        self.cidfont_obj = _CachedCIDFont(parsed.tt, parsed.ps_name, self.subset_prefix)
        self.features = None
        self.units_per_em = parsed.units_per_em
        self._glyphs: dict[int, tuple[int, int]] = {}
        self._glyph_set = parsed.glyph_set
        self._cid_to_unicode: dict[int, str] = {}
        self._GlyphAccumulator__reverse_cmap = parsed.reverse_cmap
        self.ot_language_tag = None
        self.ot_script_tag = None
        self.writing_direction = None
        self.bcp47_lang_code = None
        self._subset_created = self._write_prepared = False

    def prime(self, text: str = PRIMED_TEXT) -> None:
        """Add the glyphs of ``text`` (left to right, Latin) to the subset."""
        saved = (self.ot_script_tag, self.writing_direction, self.bcp47_lang_code)
        self.ot_script_tag, self.writing_direction, self.bcp47_lang_code = "latn", "ltr", None
        try:
            self.shape(text)
        finally:
            self.ot_script_tag, self.writing_direction, self.bcp47_lang_code = saved

    def _extract_subset(self, options: Any = None) -> None:
        key = (self._cache_key, frozenset(self._glyphs))
        found = _subsets.get(key)
        if found is None:
            from fontTools.ttLib import TTFont

            shared, self.tt = self.tt, TTFont(io.BytesIO(self._parsed.data))
            try:
                super()._extract_subset(options)
                out = io.BytesIO()
                self.tt.save(out)
            finally:
                self.tt = shared
            found = zlib.compress(out.getvalue())
            _subsets.put(key, found)
        if isinstance(self.cidfont_obj, _CachedCIDFont):
            self.cidfont_obj.compressed = found

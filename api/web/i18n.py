"""The web pages' words, in French and Arabic, from gettext catalogues.

The words live in ``api/web/translations/<lang>/LC_MESSAGES/messages.po``, files a translator
edits with any PO editor. Message ids are stable keys (``nav.queue``, ``error.quota-exhausted``);
each Arabic entry carries the French text as a translator's comment. ``make translations``
compiles them to ``.mo`` (``pybabel compile``); a missing or older ``.mo`` is compiled in
memory from its ``.po`` at first use, so a checkout works without the build step.

* :func:`text` gives one message, with ``{name}`` parameters; a key missing from the
  catalogue is shown as itself, so a forgotten translation is visible (a test checks that
  every key the templates use is in both catalogues).
* :func:`plural` applies the language's plural rule (Arabic has six forms).
* :func:`error_message` turns a domain error into a sentence for people: never the
  service's English ``detail``, never an internal action name.
* :func:`number`, :func:`day`, :func:`moment` format in the reader's locale, dates in
  Africa/Casablanca time.

Names of places and people come from the bilingual data (``name_fr`` / ``name_ar``).
"""

from __future__ import annotations

import gettext
import io
import string
from datetime import date, datetime
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from babel.dates import format_date, format_datetime
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_decimal

from core.errors import TawqiError

LANGS = ("fr", "ar")
DEFAULT_LANG = "fr"
DOMAIN = "messages"
CATALOGUES = Path(__file__).parent / "translations"
TIMEZONE = ZoneInfo("Africa/Casablanca")
#: The CLDR locales used for numbers and dates (Morocco writes Western digits in Arabic).
LOCALES = {"fr": "fr_MA", "ar": "ar_MA"}
#: Facts a domain error may carry that a message can show (never a secret, never English).
ERROR_PARAMETERS = ("year", "allotted", "entity", "field", "limit", "retry_after",
                    "attempts_left")


def catalogue_path(lang: str, suffix: str = ".po") -> Path:
    return CATALOGUES / lang / "LC_MESSAGES" / f"{DOMAIN}{suffix}"


@cache
def translations(lang: str) -> gettext.GNUTranslations:
    """The compiled catalogue of ``lang`` (``.mo`` if built and fresh, else from ``.po``)."""
    po, mo = catalogue_path(lang), catalogue_path(lang, ".mo")
    if mo.exists() and mo.stat().st_mtime >= po.stat().st_mtime:
        with mo.open("rb") as handle:
            return gettext.GNUTranslations(handle)
    with po.open("rb") as handle:
        catalog = read_po(handle, locale=lang, domain=DOMAIN)
    compiled = io.BytesIO()
    write_mo(compiled, catalog)
    compiled.seek(0)
    return gettext.GNUTranslations(compiled)


def _lang(lang: str) -> str:
    return lang if lang in LANGS else DEFAULT_LANG


def has(lang: str, key: str) -> bool:
    return translations(_lang(lang)).gettext(key) != key


class _Keep(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def _fill(found: str, values: dict[str, Any]) -> str:
    if not values:
        return found
    return string.Formatter().vformat(found, (), _Keep(values))


def text(lang: str, key: str, **values: Any) -> str:
    return _fill(translations(_lang(lang)).gettext(key), values)


def plural(lang: str, key: str, n: float, **values: Any) -> str:
    """The form of ``key`` for ``n`` (the catalogue holds one entry per plural form; in
    the text ``{n}`` is the number written in the reader's locale)."""
    found = translations(_lang(lang)).ngettext(key, key, round(n))
    return _fill(found, {"n": number(lang, n), **values})


def number(lang: str, value: int | float | None) -> str:
    if value is None:
        return "—"
    return format_decimal(value, locale=LOCALES[_lang(lang)])


def day(lang: str, at: datetime | date | None) -> str:
    """A date (a datetime is first brought to Casablanca time): ``29 nov. 2026``."""
    if at is None:
        return "—"
    if isinstance(at, datetime):
        at = _local(at).date()
    return format_date(at, format="medium", locale=LOCALES[_lang(lang)])


def moment(lang: str, at: datetime | None) -> str:
    """A date and time in Casablanca time."""
    if at is None:
        return "—"
    return format_datetime(_local(at), format="medium", tzinfo=TIMEZONE,
                           locale=LOCALES[_lang(lang)])


def _local(at: datetime) -> datetime:
    if at.tzinfo is None:  # the database keeps UTC
        at = at.replace(tzinfo=ZoneInfo("UTC"))
    return at.astimezone(TIMEZONE)


def error_keys(lang: str, exc: TawqiError) -> list[str]:
    """The catalogue keys for ``exc``, most precise first: its type and field, its type,
    then the types of its families (``error.conflict``...), then ``error.generic``."""
    field = exc.extras.get("field")
    found = []
    for cls in type(exc).__mro__:
        kind = getattr(cls, "type", None)
        if not isinstance(kind, str):
            continue
        for key in ((f"error.{kind}.{field}",) if field else ()) + (f"error.{kind}",):
            if key not in found and has(lang, key):
                found.append(key)
    return [*found, "error.generic"]


def error_message(lang: str, exc: TawqiError) -> str:
    """The first of :func:`error_keys` whose parameters the error carries, filled in."""
    values = {k: exc.extras[k] for k in ERROR_PARAMETERS if exc.extras.get(k) is not None}
    if isinstance(values.get("year"), int):
        values["year"] = str(values["year"])
    if "field" in values:
        values["field"] = text(lang, f"field.{values['field']}")
    for key in error_keys(lang, exc):
        wanted = {name for _, name, _, _ in string.Formatter().parse(text(lang, key)) if name}
        if wanted <= set(values):
            return text(lang, key, **values)
    return text(lang, "error.generic")


def pick(lang: str, obj: Any, field: str) -> str:
    """``obj.<field>_ar`` in Arabic, ``obj.<field>_fr`` otherwise (falling back to the
    other language when one is empty)."""
    fr = getattr(obj, f"{field}_fr", None) or ""
    ar = getattr(obj, f"{field}_ar", None) or ""
    return (ar or fr) if lang == "ar" else (fr or ar)

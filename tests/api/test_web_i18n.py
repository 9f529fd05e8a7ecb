"""The web pages' words: gettext catalogues a translator edits (api/web/translations), one
glossary, errors as sentences in the reader's language, Arabic plurals, dates in
Africa/Casablanca time. No browser, no database."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from babel.messages.pofile import read_po

import core.errors
import delivery.errors
import quotas.errors
from api.web import i18n
from api.web.verify import SUB_INDICATIONS
from core.errors import TawqiError
from delivery import holders
from delivery.models import BATCH_STATES, REQUEST_STATES, TOKEN_FORMS
from delivery.oversight import QUEUE_STAGES
from pki.reasons import REVOCATION_REASONS

TEMPLATES = Path(i18n.__file__).parent / "templates" / "web"
#: keys the templates build from a prefix and a value
DYNAMIC = ([f"status.{s}" for s in REQUEST_STATES] + [f"batch.{s}" for s in BATCH_STATES]
           + [f"role.{r}" for r in holders.ROLES] + [f"form.{f}" for f in TOKEN_FORMS]
           + [f"queue.{s}" for s in QUEUE_STAGES]
           + [f"cert.{s}" for s in ("valid", "revoked", "suspended", "expired")]
           + [f"col.{level}" for level in ("region", "province", "commune")]
           + [f"me.change_{channel}" for channel in ("sms", "email")]
           + [f"verify.sub.{s}" for s in SUB_INDICATIONS]
           + [f"verify.ind.{i}" for i in ("TOTAL-PASSED", "INDETERMINATE", "TOTAL-FAILED")]
           + [f"verify.cert.{c}" for c in ("good", "revoked", "suspended", "expired",
                                            "not-yet-valid", "unknown", "untrusted")]
           + [f"sort.{s}" for s in ("age", "idle", "id", "name", "province")]
           + [f"document.{d}" for d in ("cin", "passport", "residence")]
           + [f"userrole.{r}" for r in ("dgcl_admin", "operator", "contact", "holder")]
           + ["admin.chain_ok", "admin.chain_broken", "admin.active", "admin.disabled",
              "admin.disable", "admin.enable"]
           + [f"certstate.{c}" for c in ("issued", "suspended", "revoked")]
           + [f"reason.{r}" for r in REVOCATION_REASONS]
           + ["verify.intact.yes", "verify.intact.no", "verify.after.allowed",
              "verify.after.other"]
           + [f"done.{d}" for d in ("holder", "request", "handover", "approved", "rejected",
                                    "terms", "contact", "cancelled", "received", "pin",
                                    "pin_declared", "reset", "contact_confirmed", "prepared",
                                    "dispatched", "retried", "partnership", "user", "user_active",
                                    "key_revoked", "suspended", "released", "revoked", "renewed")])


def _catalog(lang: str) -> dict[str, object]:
    with i18n.catalogue_path(lang).open("rb") as handle:
        catalog = read_po(handle, locale=lang)
    return {str(m.id if isinstance(m.id, str) else m.id[0]): m.string
            for m in catalog if m.id}


def test_both_catalogues_hold_the_same_keys_all_translated() -> None:
    fr, ar = _catalog("fr"), _catalog("ar")
    assert set(fr) == set(ar)
    for lang, found in (("fr", fr), ("ar", ar)):
        empty = [k for k, v in found.items()
                 if not (v if isinstance(v, str) else all(v))]  # type: ignore[union-attr]
        assert not empty, (lang, empty)


def test_every_key_the_templates_use_is_translated() -> None:
    used = set(DYNAMIC)
    for template in TEMPLATES.glob("*.html"):
        used |= {k for k in re.findall(r"\bt[n]?\('([A-Za-z0-9_.-]+)'", template.read_text())
                 if not k.endswith(('.', '_'))}  # a prefix: see DYNAMIC
    for lang in i18n.LANGS:
        missing = sorted(k for k in used if not i18n.has(lang, k))
        assert not missing, (lang, missing)


def _strings(lang: str) -> list[str]:
    found = []
    for value in _catalog(lang).values():
        found.extend([value] if isinstance(value, str) else list(value))  # type: ignore[arg-type]
    return found


def test_one_glossary_word_per_language() -> None:
    """token = jeton / جهاز التوقيع; holder = titulaire / صاحب الشهادة; contact = contact /
    المنسق; PIN = code PIN / الرمز السري (docs/web.md)."""
    ar = " ".join(_strings("ar"))
    for other in ("حامل", "الحامل", "رمز مادي", "رمز مستضاف", "الرموز", "الدعامة", "المراسل"):
        assert other not in ar, other
    assert "جهاز التوقيع" in ar and "صاحب الشهادة" in ar and "المنسق" in ar
    fr = " ".join(_strings("fr")).lower()
    for other in ("token", "porteur", "support", "détenteur", "correspondant"):
        assert other not in fr, other


def _error_classes() -> list[type[TawqiError]]:
    found = []
    for module in (core.errors, delivery.errors, quotas.errors):
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, TawqiError):
                found.append(value)
    return found


@pytest.mark.parametrize("lang", i18n.LANGS)
def test_every_domain_error_reads_as_a_sentence_of_the_language(lang: str) -> None:
    for cls in _error_classes():
        exc = cls("an English detail naming oversight.read", field="mobile", year=2026,
                  allotted=3, entity="01.051.01.01")
        message = i18n.error_message(lang, exc)
        assert "English" not in message and "oversight" not in message, cls
        assert "{" not in message and not message.startswith("error."), (cls, message)
        if lang == "ar":
            assert re.search(r"[\u0600-\u06FF]", message), (cls, message)


def test_a_field_error_names_the_field_in_the_language() -> None:
    exc = delivery.errors.InvalidHolder("surname_ar must not be empty", field="surname_ar")
    assert i18n.error_message("fr", exc) == "Donnée du titulaire invalide : nom (arabe)."
    assert "الاسم العائلي" in i18n.error_message("ar", exc)
    quota = quotas.errors.QuotaExhausted("no quota left", entity="x", year=2026, allotted=5)
    assert "2026" in i18n.error_message("fr", quota) and "5" in i18n.error_message("fr", quota)


def test_arabic_plurals_have_six_forms() -> None:
    said = {n: i18n.plural("ar", "days.n", n) for n in (0, 1, 2, 3, 11, 100)}
    assert said == {0: "0 يوم", 1: "يوم واحد", 2: "يومان", 3: "3 أيام", 11: "11 يومًا",
                    100: "100 يوم"}
    assert i18n.plural("fr", "days.n", 1) == "1 jour"
    assert i18n.plural("fr", "days.n", 1503) == "1\u202f503 jours"


def test_dates_are_in_casablanca_time_and_the_readers_locale() -> None:
    late = datetime(2026, 11, 29, 23, 30, tzinfo=UTC)  # already the 30th in Casablanca
    assert i18n.day("fr", late) == "30 nov. 2026"
    assert "30" in i18n.day("ar", late) and "2026" in i18n.day("ar", late)
    assert i18n.moment("fr", late).startswith("30 nov. 2026") and "00:30" in \
        i18n.moment("fr", late)


def test_a_catalogue_compiles_from_its_po_without_a_build_step(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch
                                                              ) -> None:
    for lang in i18n.LANGS:
        folder = tmp_path / lang / "LC_MESSAGES"
        folder.mkdir(parents=True)
        (folder / "messages.po").write_bytes(i18n.catalogue_path(lang).read_bytes())
    monkeypatch.setattr(i18n, "CATALOGUES", tmp_path)
    i18n.translations.cache_clear()
    try:
        assert i18n.text("ar", "nav.queue") == "قائمة المشغل"
        assert not (tmp_path / "ar" / "LC_MESSAGES" / "messages.mo").exists()
    finally:
        i18n.translations.cache_clear()

"""Roles, civilities and the titles they make, in French and Arabic.

A title agrees with its holder's civility: a woman who presides a council is "Présidente du
conseil de la commune" / "رئيسة مجلس الجماعة". The certificate's ``title``, the signature
stamp, notices and pages all take their wording from :func:`title_for`; nothing else writes a
title.
"""

from __future__ import annotations

MR = "mr"  # Monsieur / السيد
MRS = "mrs"  # Madame / السيدة
CIVILITIES = (MR, MRS)
LANGUAGES = ("fr", "ar")

#: role -> {civility -> (French, Arabic)}
_TITLES: dict[str, dict[str, tuple[str, str]]] = {
    "president": {
        MR: ("Président du conseil de la commune", "رئيس مجلس الجماعة"),
        MRS: ("Présidente du conseil de la commune", "رئيسة مجلس الجماعة"),
    },
    "vice_president": {
        MR: ("Vice-président du conseil de la commune", "نائب رئيس مجلس الجماعة"),
        MRS: ("Vice-présidente du conseil de la commune", "نائبة رئيس مجلس الجماعة"),
    },
    "secretary_general": {
        MR: ("Directeur général des services", "المدير العام للمصالح"),
        MRS: ("Directrice générale des services", "المديرة العامة للمصالح"),
    },
    "official": {
        MR: ("Fonctionnaire habilité", "موظف مؤهل"),
        MRS: ("Fonctionnaire habilitée", "موظفة مؤهلة"),
    },
}

#: The roles a holder's mandate may carry, in order of rank.
ROLES: tuple[str, ...] = tuple(_TITLES)
#: Roles that only exist in a commune (not in a province's Interior services).
COMMUNE_ONLY_ROLES = ("president", "vice_president", "secretary_general")

_LABELS = {MR: ("Monsieur", "السيد"), MRS: ("Madame", "السيدة")}

#: What people type for a civility (forms, CSV files), lowercased -> the stored value.
_ALIASES = {
    "mr": MR, "m": MR, "m.": MR, "monsieur": MR, "h": MR, "male": MR, "السيد": MR,
    "mrs": MRS, "ms": MRS, "mme": MRS, "madame": MRS, "f": MRS, "female": MRS, "السيدة": MRS,
}


def parse_civility(value: str) -> str | None:
    """The stored civility for what someone typed ("Mme", "M.", "F", "السيدة"...), or None."""
    return _ALIASES.get(value.strip().lower()) if value else None


def _index(lang: str) -> int:
    if lang not in LANGUAGES:
        raise ValueError(f"language must be one of {', '.join(LANGUAGES)}")
    return LANGUAGES.index(lang)


def title_for(role: str, civility: str, lang: str) -> str:
    """The holder's title for ``role``, agreeing with ``civility``, in ``lang`` (fr|ar)."""
    try:
        forms = _TITLES[role]
    except KeyError:
        raise ValueError(f"role must be one of {', '.join(ROLES)}") from None
    if civility not in forms:
        raise ValueError(f"civility must be one of {', '.join(CIVILITIES)}")
    return forms[civility][_index(lang)]


def civility_label(civility: str, lang: str) -> str:
    """How to address the holder: "Madame" / "السيدة", "Monsieur" / "السيد"."""
    if civility not in _LABELS:
        raise ValueError(f"civility must be one of {', '.join(CIVILITIES)}")
    return _LABELS[civility][_index(lang)]

"""RFC 5280 revocation reason codes, in the three spellings we meet.

Stored and shown with RFC 5280's names (``affiliationChanged``); accepted also as
``affiliation-changed`` or ``affiliation_changed``. ``certificateHold`` is set by suspension
only, ``removeFromCRL`` belongs to delta CRLs (we publish full CRLs), and the CA/AA
compromise codes do not apply to end-entity certificates.
"""

from __future__ import annotations

import re

from cryptography import x509

from pki.errors import InvalidRevocationReason

# RFC 5280 name -> (CRLReason code, asn1crypto name)
_REASONS: dict[str, tuple[int, str]] = {
    "unspecified": (0, "unspecified"),
    "keyCompromise": (1, "key_compromise"),
    "affiliationChanged": (3, "affiliation_changed"),
    "superseded": (4, "superseded"),
    "cessationOfOperation": (5, "cessation_of_operation"),
    "certificateHold": (6, "certificate_hold"),
    "privilegeWithdrawn": (9, "privilege_withdrawn"),
}
#: The reasons an operator may give to :func:`pki.lifecycle.revoke`.
REVOCATION_REASONS = tuple(r for r in _REASONS if r != "certificateHold")
HOLD = "certificateHold"

_LOOKUP = {re.sub(r"[^a-z]", "", name.lower()): name for name in _REASONS}


def canonical(reason: str, *, allow_hold: bool = False) -> str:
    """``affiliation-changed`` -> ``affiliationChanged``; raise on anything else."""
    key = re.sub(r"[^a-z]", "", (reason or "").lower())
    name = _LOOKUP.get(key)
    if name is None or (name == HOLD and not allow_hold):
        raise InvalidRevocationReason(
            "unknown revocation reason; use one of " + ", ".join(REVOCATION_REASONS),
            reason=str(reason)[:50], allowed=list(REVOCATION_REASONS))
    return name


def code(reason: str) -> int:
    return _REASONS[reason][0]


def asn1_name(reason: str) -> str:
    return _REASONS[reason][1]


def reason_flag(reason: str) -> x509.ReasonFlags:
    return x509.ReasonFlags(reason)

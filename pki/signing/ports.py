"""What remote signing needs from outside ``pki``: the holder directory and the code sender
(delivery implements both; the composition root ``api/wiring`` plugs them in) and the part
of the token layer it signs with.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.orm import Session

from core.clock import Clock
from pki.signing.stamp import StampText


@dataclass(frozen=True)
class HolderContact:
    """What the directory says about a credential's holder (delivery knows it)."""

    holder_id: int
    mobile: str
    hosted: bool
    ready: bool
    reasons: tuple[str, ...] = ()
    # How the visible stamp names the holder (French and Arabic).
    name_fr: str = ""
    name_ar: str = ""
    title_fr: str = ""
    title_ar: str = ""
    organisation_fr: str = ""
    organisation_ar: str = ""

    def stamp(self, at: datetime) -> StampText:
        return StampText(self.name_fr, self.name_ar, self.title_fr, self.title_ar,
                         self.organisation_fr, self.organisation_ar, at)


class HolderDirectory(Protocol):
    def contact(self, session: Session, cin: str, serial: str) -> HolderContact | None:
        """The holder with this CIN and whether the credential ``serial`` is a hosted token
        ready to sign; None if no such holder."""
        ...


class CodeSender(Protocol):
    def send(self, session: Session, clock: Clock, *, contact: HolderContact,
             challenge_id: str, code: str, ttl_minutes: int, purpose_fr: str,
             purpose_ar: str) -> str:
        """Queue the code for the holder's mobile in the caller's transaction; return a hint
        of the number (its last digits). Must not keep the code in clear."""
        ...


class SigningTokens(Protocol):
    """The part of ``hsm.TokenLibrary`` remote signing uses."""

    def private_key(self, label: str, pin: str, *, key_id: bytes | None = ...,
                    key_label: str | None = ...) -> Any: ...

    def private_key_soon(self, label: str, pin: str, *, key_id: bytes) -> Any:
        """The key at once, its PIN check under way; its first signature waits for the
        check and raises its error. The key's ``wait_for_pin_check()`` waits for it."""
        ...


__all__ = ["CodeSender", "HolderContact", "HolderDirectory", "SigningTokens"]

"""The loaded certificate authority and the helpers every service shares.

:class:`Authority` is what services receive: the issuing CA's :class:`~pki.signer.Signer`,
the OCSP responder's and the TSA's signers, and the :class:`~pki.profiles.Profile`. Build it
with :func:`pki.ca.load_authority`; it holds token key handles, never key material.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from cryptography import x509
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from pki.errors import AuthorityExpired, SerialCollision
from pki.profiles import Profile
from pki.signer import Signer

T = TypeVar("T")

#: Random serials: 159 bits (fits the 20-octet limit of RFC 5280 once DER-encoded as a
#: positive INTEGER), at least 64 of them random as CA/B and ETSI ask.
SERIAL_BITS = 159


def random_serial() -> int:
    """A fresh positive serial with at least 64 random bits (``secrets``)."""
    while True:
        serial = secrets.randbits(SERIAL_BITS)
        if serial >= 1 << 64:
            return serial


def serial_hex(serial: int) -> str:
    return format(serial, "x")


def normalise_serial(text: str | int) -> str:
    """Accept ``0x1a2b``, ``1A:2B``, ``1a2b`` (hex, as we print it) or an int."""
    if isinstance(text, int):
        return serial_hex(text)
    cleaned = text.strip().lower().replace(":", "").replace(" ", "")
    cleaned = cleaned.removeprefix("0x").lstrip("0")
    if not cleaned or any(ch not in "0123456789abcdef" for ch in cleaned):
        from pki.errors import CertificateNotFound

        raise CertificateNotFound("a serial is hexadecimal, as `tawqi cert list` prints it",
                                  serial=str(text)[:80])
    return cleaned


def with_fresh_serial(session: Session, insert: Callable[[int], T], *, attempts: int = 4) -> T:
    """Call ``insert(serial)`` inside a savepoint with a new random serial until the unique
    constraint accepts it (a collision of 159-bit random values is practically impossible,
    but the constraint, not hope, is what guarantees uniqueness)."""
    for _ in range(attempts):
        serial = random_serial()
        try:
            with session.begin_nested():
                result = insert(serial)
                session.flush()
            return result
        except IntegrityError:
            continue
    raise SerialCollision("could not draw an unused serial number")


def sha1(data: bytes) -> bytes:
    return hashlib.sha1(data, usedforsecurity=False).digest()


def name_hash(certificate: x509.Certificate) -> bytes:
    """SHA-1 of the DER subject: an OCSP CertID's issuerNameHash for certificates it issued."""
    return sha1(certificate.subject.public_bytes())


@dataclass(frozen=True)
class Authority:
    """The issuing CA ready to sign, with its OCSP responder and TSA (when present)."""

    id: int
    signer: Signer
    profile: Profile
    ocsp_signer: Signer | None = None
    tsa_signer: Signer | None = None

    @property
    def certificate(self) -> x509.Certificate:
        return self.signer.certificate

    @property
    def root(self) -> x509.Certificate:
        return self.signer.chain[-1] if self.signer.chain else self.signer.certificate

    @property
    def name_hash(self) -> bytes:
        return name_hash(self.certificate)

    @property
    def key_hash(self) -> bytes:
        return self.signer.key_hash

    def check_can_sign(self, at: datetime) -> None:
        """Raise :class:`AuthorityExpired` if the CA certificate is not valid at ``at``."""
        cert = self.certificate
        if not (cert.not_valid_before_utc <= at <= cert.not_valid_after_utc):
            raise AuthorityExpired("the issuing CA certificate is not valid now",
                                   not_after=cert.not_valid_after_utc.isoformat())

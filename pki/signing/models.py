"""The tables of remote signing: one-time codes, signature activation data (SADs), the
OAuth 2.0 authorisation codes with the redirect URIs registered per API client, and the
public records of stamped signatures (what their QR code's status page shows).

Their migration is ``pki/signing/migrations`` (Alembic branch ``signing``; the revision
ids are the ones databases already carry).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    CheckConstraint,
    DateTime,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base

PURPOSE_HASH = "hash"
PURPOSE_DOCUMENT = "document"
SAD_ACTIVE, SAD_USED = "active", "used"
OTP_OPEN, OTP_USED, OTP_FAILED = "open", "used", "failed"
CODE_OPEN, CODE_USED = "open", "used"


class SigningChallenge(Base):
    """A one-time code sent for a credential; only its argon2id hash is kept."""

    __tablename__ = "signing_challenge"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    certificate_id: Mapped[int] = mapped_column(ForeignKey("pki_certificate.id"), index=True)
    client: Mapped[str] = mapped_column(String(100))
    code_hash: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(10))
    attempts: Mapped[int] = mapped_column(Integer)
    max_attempts: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    __table_args__ = (CheckConstraint("status IN ('open', 'used', 'failed')", name="status"),)


class SigningAuthorization(Base):
    """A SAD: what it authorises, for whom, until when. ``sad_hash`` is the SHA-256 of the
    SAD (never the SAD); ``pin_box`` the PIN sealed under a key derived from the SAD, erased
    once used."""

    __tablename__ = "signing_authorization"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    sad_hash: Mapped[str] = mapped_column(String(64), unique=True)
    certificate_id: Mapped[int] = mapped_column(ForeignKey("pki_certificate.id"), index=True)
    client: Mapped[str] = mapped_column(String(100))
    purpose: Mapped[str] = mapped_column(String(10))
    hash_algorithm: Mapped[str] = mapped_column(String(10))
    # SHA-256 over the sorted authorised digests: the SAD binds exactly this set.
    digests_hash: Mapped[str] = mapped_column(String(64))
    num_signatures: Mapped[int] = mapped_column(Integer)
    description: Mapped[str] = mapped_column(Text, default="")
    pin_box: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    status: Mapped[str] = mapped_column(String(10))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    __table_args__ = (
        CheckConstraint("status IN ('active', 'used')", name="status"),
        CheckConstraint("purpose IN ('hash', 'document')", name="purpose"),
        CheckConstraint("status = 'active' OR pin_box IS NULL", name="box_erased_when_used"),
    )


class OAuthRedirect(Base):
    """A redirect URI registered for an API client (``client`` is the principal's key,
    ``apikey:<id>``): /oauth2/authorize redirects nowhere else."""

    __tablename__ = "signing_oauth_redirect"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client: Mapped[str] = mapped_column(String(100), index=True)
    redirect_uri: Mapped[str] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (UniqueConstraint("client", "redirect_uri",
                                       name="uq_signing_oauth_redirect"),)


class OAuthCode(Base):
    """An authorisation code (RFC 6749 §4.1, PKCE RFC 7636): only its SHA-256 is kept.

    The SAD it will be exchanged for waits sealed (AES-256-GCM) under a key derived from the
    code itself, so the database alone gives neither; the box is erased at the exchange.
    Single use, short-lived."""

    __tablename__ = "signing_oauth_code"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    client: Mapped[str] = mapped_column(String(100))
    redirect_uri: Mapped[str] = mapped_column(String(500))
    code_challenge: Mapped[str] = mapped_column(String(128))
    authorization_id: Mapped[str] = mapped_column(String(36))
    credential_id: Mapped[str] = mapped_column(String(64))
    num_signatures: Mapped[int] = mapped_column(Integer)
    sad_box: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    status: Mapped[str] = mapped_column(String(10))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    __table_args__ = (CheckConstraint("status IN ('open', 'used')", name="status"),
                      CheckConstraint("status = 'open' OR sad_box IS NULL",
                                      name="box_erased_when_used"))


class SignatureRecord(Base):
    """A signature made with a visible stamp, as its public status page shows it: the
    random ``public_id`` of the QR code's URL (unguessable), the certificate, the time and
    the stamp's own text. Nothing the stamp does not show (no CIN, no phone)."""

    __tablename__ = "signing_record"

    public_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    certificate_id: Mapped[int] = mapped_column(ForeignKey("pki_certificate.id"), index=True)
    serial: Mapped[str] = mapped_column(String(40))
    signed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    name_fr: Mapped[str] = mapped_column(String(120))
    name_ar: Mapped[str] = mapped_column(String(120))
    title_fr: Mapped[str] = mapped_column(String(120))
    title_ar: Mapped[str] = mapped_column(String(120))
    organisation_fr: Mapped[str] = mapped_column(String(120))
    organisation_ar: Mapped[str] = mapped_column(String(120))
    document_name: Mapped[str | None] = mapped_column(String(200), nullable=True)


__all__ = [
    "CODE_OPEN",
    "CODE_USED",
    "OTP_FAILED",
    "OTP_OPEN",
    "OTP_USED",
    "PURPOSE_DOCUMENT",
    "PURPOSE_HASH",
    "SAD_ACTIVE",
    "SAD_USED",
    "OAuthCode",
    "OAuthRedirect",
    "SignatureRecord",
    "SigningAuthorization",
    "SigningChallenge",
]

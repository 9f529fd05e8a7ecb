"""Tables of the certificate authority.

Serial numbers are stored as lowercase hexadecimal without leading zeros (a 159-bit serial
does not fit a BIGINT), under a unique constraint: a drawn serial is never used twice,
whichever CA drew it. Private keys are never stored here; a row names the token and the
key id where the key lives.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base

AUTHORITY_KINDS = ("root", "issuing")

PROFILE_HOLDER = "holder"
PROFILE_OCSP = "ocsp"
PROFILE_TSA = "tsa"
PROFILES = (PROFILE_HOLDER, PROFILE_OCSP, PROFILE_TSA)

STATUS_PREPARED = "prepared"  # serial drawn, row stored, not signed yet
STATUS_ISSUED = "issued"
STATUS_SUSPENDED = "suspended"  # on hold (certificateHold), may be released
STATUS_REVOKED = "revoked"  # final
STATUS_ABANDONED = "abandoned"  # prepared, never signed (e.g. the token write failed)
STATUSES = (STATUS_PREPARED, STATUS_ISSUED, STATUS_SUSPENDED, STATUS_REVOKED,
            STATUS_ABANDONED)


class AuthorityRecord(Base):
    """A CA certificate of ours (the root or an issuing CA) and where its key lives."""

    __tablename__ = "pki_authority"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(10))
    subject: Mapped[str] = mapped_column(String(500))
    serial: Mapped[str] = mapped_column(String(40), unique=True)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("pki_authority.id"),
                                                  nullable=True)
    token_label: Mapped[str] = mapped_column(String(32))
    key_id: Mapped[str] = mapped_column(String(64))
    key_type: Mapped[str] = mapped_column(String(20))
    # SHA-1 of the subject DER and of the public key BIT STRING: an OCSP CertID's issuer.
    name_hash: Mapped[str] = mapped_column(String(40))
    key_hash: Mapped[str] = mapped_column(String(40), index=True)
    not_before: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    not_after: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    der: Mapped[bytes] = mapped_column(LargeBinary)
    # The number of the last CRL this CA signed (0 = none yet).
    crl_number: Mapped[int] = mapped_column(Integer, default=0)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (CheckConstraint("kind IN ('root', 'issuing')", name="kind"),)


class CertificateRecord(Base):
    """An end-entity certificate: a holder's, the OCSP responder's or the TSA's.

    Written first as ``prepared`` (serial, subject, public key, validity), then signed once
    (``der`` set, status ``issued``). Identity columns are copies of what the certificate
    says, kept for search; they are not secrets.
    """

    __tablename__ = "pki_certificate"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    serial: Mapped[str] = mapped_column(String(40), unique=True)
    authority_id: Mapped[int] = mapped_column(ForeignKey("pki_authority.id"), index=True)
    profile: Mapped[str] = mapped_column(String(10))
    status: Mapped[str] = mapped_column(String(10), index=True)
    subject: Mapped[str] = mapped_column(String(1000))  # RFC 4514, for people
    subject_der: Mapped[bytes] = mapped_column(LargeBinary)  # exactly what is signed
    cin: Mapped[str | None] = mapped_column(String(20), nullable=True, index=True)
    given_name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    surname: Mapped[str | None] = mapped_column(String(200), nullable=True)
    title: Mapped[str | None] = mapped_column(String(200), nullable=True)
    organization: Mapped[str | None] = mapped_column(String(200), nullable=True)
    token_label: Mapped[str] = mapped_column(String(32))
    key_id: Mapped[str] = mapped_column(String(64))
    key_type: Mapped[str] = mapped_column(String(20))
    public_key: Mapped[bytes] = mapped_column(LargeBinary)  # SubjectPublicKeyInfo DER
    not_before: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    not_after: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    der: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    fingerprint: Mapped[str | None] = mapped_column(String(64), nullable=True)  # SHA-256
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True),
                                                        nullable=True)
    revocation_reason: Mapped[str | None] = mapped_column(String(30), nullable=True)
    suspended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True),
                                                          nullable=True)
    replaces_id: Mapped[int | None] = mapped_column(ForeignKey("pki_certificate.id"),
                                                    nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        CheckConstraint("profile IN ('holder', 'ocsp', 'tsa')", name="profile"),
        CheckConstraint(
            "status IN ('prepared', 'issued', 'suspended', 'revoked', 'abandoned')",
            name="status"),
        CheckConstraint("status NOT IN ('issued', 'suspended', 'revoked') OR der IS NOT NULL",
                        name="signed_has_der"),
    )


class CrlRecord(Base):
    """Every CRL signed, kept; the one with the highest number is the one served."""

    __tablename__ = "pki_crl"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    authority_id: Mapped[int] = mapped_column(ForeignKey("pki_authority.id"))
    number: Mapped[int] = mapped_column(Integer)
    this_update: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    next_update: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    entries: Mapped[int] = mapped_column(Integer)
    der: Mapped[bytes] = mapped_column(LargeBinary)

    __table_args__ = (UniqueConstraint("authority_id", "number", name="uq_pki_crl_number"),)


class OcspRecord(Base):
    """The current pre-signed OCSP response for one certificate (replaced in place)."""

    __tablename__ = "pki_ocsp_response"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    authority_id: Mapped[int] = mapped_column(ForeignKey("pki_authority.id"))
    serial: Mapped[str] = mapped_column(String(40))
    cert_status: Mapped[str] = mapped_column(String(10))  # good | revoked
    this_update: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    next_update: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # When this row was last (re)signed; responders sync rows changed since their last look.
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    der: Mapped[bytes] = mapped_column(LargeBinary)

    __table_args__ = (
        UniqueConstraint("authority_id", "serial", name="uq_pki_ocsp_response_serial"),
    )

"""Tables of the API: people's accounts, machine keys, bearer tokens, idempotency records
and rate-limit counters.

Secrets are never stored: a password is kept as its argon2id hash, a bearer token and an
API key as the SHA-256 of their random part (they carry 256 bits of entropy, so a fast hash
is enough and lets a lookup use an index).
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
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base

ROLE_ADMIN = "dgcl_admin"
ROLE_OPERATOR = "operator"
ROLE_CONTACT = "contact"
ROLE_HOLDER = "holder"
ROLE_PLATFORM = "platform"  # API keys only
USER_ROLES = (ROLE_ADMIN, ROLE_OPERATOR, ROLE_CONTACT, ROLE_HOLDER)
ROLES = (*USER_ROLES, ROLE_PLATFORM)


class User(Base):
    """A person. A contact is bound to one province; a holder to one delivery holder."""

    __tablename__ = "api_user"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20))
    province_code: Mapped[str | None] = mapped_column(ForeignKey("province.code"),
                                                      nullable=True, index=True)
    holder_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    password_hash: Mapped[str] = mapped_column(String(200))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_login_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True),
                                                           nullable=True)
    # The TOTP second factor: the secret sealed on the token layer (never in clear), set
    # at enrolment and enabled once a first code was confirmed; the last step used (no
    # code is accepted twice).
    totp_sealed: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    totp_enabled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True),
                                                             nullable=True)
    totp_last_step: Mapped[int | None] = mapped_column(Integer, nullable=True)

    __table_args__ = (
        CheckConstraint("role IN ('dgcl_admin', 'operator', 'contact', 'holder')",
                        name="role"),
        CheckConstraint("role <> 'contact' OR province_code IS NOT NULL",
                        name="contact_province"),
    )


class ApiKey(Base):
    """A machine client's key, shown once. ``prefix`` finds the row, ``secret_hash``
    proves the key."""

    __tablename__ = "api_key"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20), default=ROLE_PLATFORM)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_by: Mapped[str] = mapped_column(String(200))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True),
                                                        nullable=True)

    __table_args__ = (CheckConstraint("role IN ('platform')", name="role"),)


class AuthSession(Base):
    """A bearer token issued at login; only its hash is kept."""

    __tablename__ = "api_session"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("api_user.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True),
                                                        nullable=True)
    # A password was right but the second factor is still to be given: such a token opens
    # nothing but the second-factor form, for a few minutes and a few attempts.
    second_factor_pending: Mapped[bool] = mapped_column(Boolean, default=False)
    attempts: Mapped[int] = mapped_column(Integer, default=0)


class RecoveryCode(Base):
    """A one-time recovery code of a user's second factor; only its SHA-256 is kept (the
    code carries 80 random bits)."""

    __tablename__ = "api_recovery_code"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("api_user.id"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class IdempotencyRecord(Base):
    """The response to a request made with an Idempotency-Key, replayed on a retry."""

    __tablename__ = "api_idempotency"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    principal: Mapped[str] = mapped_column(String(100))
    key: Mapped[str] = mapped_column(String(255))
    request_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[int] = mapped_column(Integer)
    body: Mapped[str] = mapped_column(Text)
    location: Mapped[str | None] = mapped_column(String(500), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)

    __table_args__ = (UniqueConstraint("principal", "key", name="uq_api_idempotency_key"),)


class RateCounter(Base):
    """Hits of one bucket (e.g. ``login:user:alice``) in its current fixed window."""

    __tablename__ = "api_rate_counter"

    bucket: Mapped[str] = mapped_column(String(200), primary_key=True)
    window_start: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    count: Mapped[int] = mapped_column(Integer)

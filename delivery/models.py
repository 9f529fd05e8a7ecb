"""Tables of the delivery package.

A certificate travels from a designated contact's request to its holder:
``CertificateRequest`` carries the state machine (one row per certificate asked for),
``RequestEvent`` its timeline, ``CourierBatch`` the tokens of a province in one parcel.
Secrets never sit here in clear: a PIN or a one-time code waiting to be sent lives in a
``SecretEnvelope`` (encrypted under a non-extractable key on the token layer, erased once
sent), an ``OutboxMessage`` only points at it, and a reset challenge keeps a hash of its code.

ORM constructors have no side effects; the services in this package do the work.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base

#: The request's life, in order. ``rejected`` and ``cancelled`` end it early; ``superseded``
#: (its credential renewed by a newer request), ``replaced`` (its token lost, stolen or
#: damaged, a replacement token issued) and ``ended`` (its mandate ended, its certificate
#: revoked ``affiliationChanged``) end it after personalisation.
SUBMITTED = "submitted"
APPROVED = "approved"
PERSONALISED = "personalised"
SHIPPED = "shipped"
DELIVERED = "delivered"  # to the contact, in the courier batch
HANDED_OVER = "handed_over"  # by the contact, to the holder
ACTIVE = "active"
REJECTED = "rejected"
CANCELLED = "cancelled"
SUPERSEDED = "superseded"  # a renewal of its credential became active
REPLACED = "replaced"  # its token was reported lost, stolen or damaged and replaced
ENDED = "ended"  # its mandate ended (change of mandate, election), or an operator
#                 revoked its certificate directly: certificate revoked
REQUEST_STATES = (SUBMITTED, APPROVED, PERSONALISED, SHIPPED, DELIVERED, HANDED_OVER, ACTIVE,
                  REJECTED, CANCELLED, SUPERSEDED, REPLACED, ENDED)
OPEN_STATES = (SUBMITTED, APPROVED, PERSONALISED, SHIPPED, DELIVERED, HANDED_OVER)
#: The states that end a request (nothing follows them).
CLOSED_STATES = (REJECTED, CANCELLED, SUPERSEDED, REPLACED, ENDED)

# what a request is for: a first certificate, the renewal of an active one (same token,
# same key: the credential carries over), or a replacement token (lost, stolen, damaged)
KIND_NEW = "new"
KIND_RENEWAL = "renewal"
KIND_REPLACEMENT = "replacement"
REQUEST_KINDS = (KIND_NEW, KIND_RENEWAL, KIND_REPLACEMENT)

DEVICE = "device"  # personalised, then shipped in a courier batch
HOSTED = "hosted"  # stays in the service's HSM; signs through the API
TOKEN_FORMS = (DEVICE, HOSTED)

BATCH_PREPARING = "preparing"
BATCH_DISPATCHED = "dispatched"
BATCH_RECEIVED = "received"
BATCH_STATES = (BATCH_PREPARING, BATCH_DISPATCHED, BATCH_RECEIVED)

ENVELOPE_INITIAL_PIN = "initial_pin"
ENVELOPE_RESET_PIN = "reset_pin"
ENVELOPE_RESET_CODE = "reset_code"
# The one-time code that, with the PIN, authorises remote signing (pki.signing.service).
ENVELOPE_SIGNING_CODE = "signing_code"
# The code that confirms a holder's new mobile or email.
ENVELOPE_CONTACT_CODE = "contact_code"
# The code a holder signs in to the web pages with (delivery.signin).
ENVELOPE_SIGNIN_CODE = "signin_code"
ENVELOPE_PURPOSES = (ENVELOPE_INITIAL_PIN, ENVELOPE_RESET_PIN, ENVELOPE_RESET_CODE,
                     ENVELOPE_SIGNING_CODE, ENVELOPE_CONTACT_CODE, ENVELOPE_SIGNIN_CODE)

OUTBOX_PENDING = "pending"
OUTBOX_SENDING = "sending"
OUTBOX_SENT = "sent"
OUTBOX_DEAD = "dead"
OUTBOX_STATES = (OUTBOX_PENDING, OUTBOX_SENDING, OUTBOX_SENT, OUTBOX_DEAD)
CHANNELS = ("sms", "email")

RESET_OPEN = "open"
RESET_USED = "used"
RESET_FAILED = "failed"  # ran out of attempts
RESET_STATES = (RESET_OPEN, RESET_USED, RESET_FAILED)

CHANGE_PENDING = "pending"
CHANGE_CONFIRMED = "confirmed"
CHANGE_SUPERSEDED = "superseded"
CHANGE_FAILED = "failed"  # ran out of attempts or expired
CHANGE_STATES = (CHANGE_PENDING, CHANGE_CONFIRMED, CHANGE_SUPERSEDED, CHANGE_FAILED)


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Contact(Base):
    """The person a wali/governor designated to receive the province's tokens.

    At most one is active per prefecture/province (a partial unique index); a replaced
    contact keeps its row, with ``ended_at`` and ``replaced_by_id``.
    """

    __tablename__ = "delivery_contact"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    province_code: Mapped[str] = mapped_column(ForeignKey("province.code"), index=True)
    full_name: Mapped[str] = mapped_column(String(200))
    title: Mapped[str] = mapped_column(String(200))
    phone: Mapped[str] = mapped_column(String(20))
    postal_address: Mapped[str] = mapped_column(String(500))
    email: Mapped[str] = mapped_column(String(254))
    decision_reference: Mapped[str] = mapped_column(String(100))
    decision_date: Mapped[date] = mapped_column(Date)
    designated_by: Mapped[str] = mapped_column(String(200))
    active: Mapped[bool] = mapped_column(Boolean)
    designated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    replaced_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("delivery_contact.id"), nullable=True)
    recorded_by: Mapped[str] = mapped_column(String(200))

    __table_args__ = (
        Index("uq_delivery_contact_active_province", "province_code", unique=True,
              sqlite_where=text("active"), postgresql_where=text("active")),
    )


class Holder(Base):
    """A person who holds (or will hold) a signing certificate. One holder, one CIN."""

    __tablename__ = "delivery_holder"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    cin: Mapped[str] = mapped_column(String(8), unique=True)
    given_name_fr: Mapped[str] = mapped_column(String(100))
    surname_fr: Mapped[str] = mapped_column(String(100))
    given_name_ar: Mapped[str] = mapped_column(String(100))
    surname_ar: Mapped[str] = mapped_column(String(100))
    #: ``mr`` or ``mrs`` (delivery.titles): titles agree with it in French and Arabic.
    civility: Mapped[str] = mapped_column(String(3), default="mr", server_default="mr")
    role: Mapped[str] = mapped_column(String(30))
    entity_kind: Mapped[str] = mapped_column(String(10))  # commune | services
    commune_code: Mapped[str | None] = mapped_column(ForeignKey("commune.code"), nullable=True)
    province_code: Mapped[str] = mapped_column(ForeignKey("province.code"), index=True)
    mobile: Mapped[str] = mapped_column(String(20))  # E.164
    email: Mapped[str] = mapped_column(String(254))
    professional_email: Mapped[str | None] = mapped_column(String(254), nullable=True)
    # The language of the holder's SMS (one language each) and whether notices without a
    # secret go to the professional address (PINs and codes never do).
    preferred_lang: Mapped[str] = mapped_column(String(2), default="fr", server_default="fr")
    notices_to_professional: Mapped[bool] = mapped_column(Boolean, default=False,
                                                          server_default=text("false"))
    registered_by_contact_id: Mapped[int | None] = mapped_column(
        ForeignKey("delivery_contact.id"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        CheckConstraint("entity_kind IN ('commune', 'services')", name="entity_kind"),
        CheckConstraint("(entity_kind = 'commune') = (commune_code IS NOT NULL)",
                        name="commune_iff_commune"),
        CheckConstraint("civility IN ('mr', 'mrs')", name="civility"),
        CheckConstraint("preferred_lang IN ('fr', 'ar')", name="preferred_lang"),
    )

    @property
    def entity(self) -> str:
        code = self.commune_code if self.entity_kind == "commune" else self.province_code
        return f"{self.entity_kind}:{code}"


class Mandate(Base):
    """A holder's mandate: a role in an entity (a commune, or a province's Interior
    services) from ``started_on`` until ``ended_on``. A holder has at most one mandate in
    force (``ended_on`` NULL, partial unique index); ended ones stay as history, with the
    mandate that followed (``successor_id``). Mandates are the source of truth: the
    holder's ``role``, ``entity_kind``, ``commune_code``, ``province_code`` and
    ``professional_email`` are a cache of the latest mandate (in force, else the last
    ended), written only by :mod:`delivery.mandates` and checked by
    ``mandates.cache_disagreements``, so that lists and scopes stay simple."""

    __tablename__ = "delivery_mandate"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    holder_id: Mapped[int] = mapped_column(ForeignKey("delivery_holder.id"), index=True)
    role: Mapped[str] = mapped_column(String(30))
    entity_kind: Mapped[str] = mapped_column(String(10))  # commune | services
    commune_code: Mapped[str | None] = mapped_column(ForeignKey("commune.code"), nullable=True,
                                                     index=True)
    province_code: Mapped[str] = mapped_column(ForeignKey("province.code"), index=True)
    #: The address the provider created for the mandate (the certificate's email).
    professional_email: Mapped[str | None] = mapped_column(String(254), nullable=True)
    started_on: Mapped[date] = mapped_column(Date)
    ended_on: Mapped[date | None] = mapped_column(Date, nullable=True)
    end_reason: Mapped[str] = mapped_column(String(200), default="")
    successor_id: Mapped[int | None] = mapped_column(ForeignKey("delivery_mandate.id"),
                                                     nullable=True)
    campaign_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_by: Mapped[str] = mapped_column(String(200))
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    ended_by: Mapped[str | None] = mapped_column(String(200), nullable=True)

    __table_args__ = (
        CheckConstraint("entity_kind IN ('commune', 'services')", name="entity_kind"),
        CheckConstraint("(entity_kind = 'commune') = (commune_code IS NOT NULL)",
                        name="commune_iff_commune"),
        Index("uq_delivery_mandate_current_holder", "holder_id", unique=True,
              sqlite_where=text("ended_on IS NULL"), postgresql_where=text("ended_on IS NULL")),
    )

    @property
    def entity(self) -> str:
        code = self.commune_code if self.entity_kind == "commune" else self.province_code
        return f"{self.entity_kind}:{code}"

    @property
    def current(self) -> bool:
        return self.ended_on is None


class CertificateRequest(Base):
    """One certificate asked for a holder, from the contact's request to activation.

    Invariants: ``reservation_id`` holds one quota reservation from submission until it is
    released (rejected, cancelled) or consumed (active); a holder has at most one request in
    an open state (partial unique index); every status change adds a ``RequestEvent`` and an
    audit event in the same transaction.
    """

    __tablename__ = "delivery_request"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    holder_id: Mapped[int] = mapped_column(ForeignKey("delivery_holder.id"), index=True)
    #: The mandate the certificate is for: its title and O come from it.
    mandate_id: Mapped[int] = mapped_column(ForeignKey("delivery_mandate.id"), index=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("delivery_contact.id"))
    province_code: Mapped[str] = mapped_column(ForeignKey("province.code"), index=True)
    entity: Mapped[str] = mapped_column(String(30))  # quota entity, e.g. commune:01.051.01.01
    year: Mapped[int] = mapped_column(Integer)
    token_form: Mapped[str] = mapped_column(String(10))
    status: Mapped[str] = mapped_column(String(20), index=True)
    status_reason: Mapped[str] = mapped_column(String(500), default="")
    reservation_id: Mapped[int] = mapped_column(ForeignKey("quota_reservation.id"))
    token_label: Mapped[str | None] = mapped_column(String(32), nullable=True, unique=True)
    certificate_serial: Mapped[str | None] = mapped_column(String(64), nullable=True)
    certificate_not_after: Mapped[datetime | None] = mapped_column(DateTime(timezone=True),
                                                                   nullable=True)
    batch_id: Mapped[int | None] = mapped_column(ForeignKey("delivery_batch.id"),
                                                 nullable=True, index=True)
    pin_envelope_id: Mapped[str | None] = mapped_column(
        ForeignKey("delivery_secret_envelope.id"), nullable=True)
    pin_sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    handed_over_to: Mapped[str | None] = mapped_column(String(200), nullable=True)
    handed_over_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True),
                                                            nullable=True)
    handover_acknowledgement: Mapped[str | None] = mapped_column(String(500), nullable=True)
    terms_version: Mapped[str | None] = mapped_column(String(50), nullable=True)
    terms_accepted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True),
                                                               nullable=True)
    pin_change_required: Mapped[bool] = mapped_column(Boolean, default=True)
    pin_changed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True),
                                                            nullable=True)
    kind: Mapped[str] = mapped_column(String(12), default=KIND_NEW, server_default=KIND_NEW)
    # the request whose credential this one renews or replaces
    follows_request_id: Mapped[int | None] = mapped_column(
        ForeignKey("delivery_request.id", name="fk_delivery_request_follows"), nullable=True)
    submitted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        CheckConstraint(_in("status", REQUEST_STATES), name="status"),
        CheckConstraint(_in("token_form", TOKEN_FORMS), name="token_form"),
        Index("uq_delivery_request_open_holder", "holder_id", unique=True,
              sqlite_where=text(_in("status", OPEN_STATES)),
              postgresql_where=text(_in("status", OPEN_STATES))),
    )


class RequestEvent(Base):
    """One step of a request's timeline: who moved it, from where to where, when."""

    __tablename__ = "delivery_request_event"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("delivery_request.id"), index=True)
    from_status: Mapped[str | None] = mapped_column(String(20), nullable=True)
    to_status: Mapped[str] = mapped_column(String(20))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    actor: Mapped[str] = mapped_column(String(200))
    note: Mapped[str] = mapped_column(String(500), default="")


class CourierBatch(Base):
    """The personalised device tokens of one province, in one parcel to its contact."""

    __tablename__ = "delivery_batch"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    province_code: Mapped[str] = mapped_column(ForeignKey("province.code"), index=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("delivery_contact.id"))
    status: Mapped[str] = mapped_column(String(20))
    courier: Mapped[str] = mapped_column(String(50), default="Amana")
    tracking_number: Mapped[str | None] = mapped_column(String(20), nullable=True, unique=True)
    prepared_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    prepared_by: Mapped[str] = mapped_column(String(200))
    dispatched_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True),
                                                           nullable=True)
    dispatched_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    received_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    received_by: Mapped[str | None] = mapped_column(String(200), nullable=True)

    __table_args__ = (
        CheckConstraint(_in("status", BATCH_STATES), name="status"),
        Index("uq_delivery_batch_preparing_province", "province_code", unique=True,
              sqlite_where=text("status = 'preparing'"),
              postgresql_where=text("status = 'preparing'")),
    )


class SecretEnvelope(Base):
    """A PIN or one-time code waiting to be sent, encrypted on the token layer.

    ``ciphertext`` is AES-GCM under a one-message key derived by a non-extractable key of the
    service's token (:mod:`hsm.sealing`), bound (AAD)
    to this row's id and purpose. It is set to NULL (``destroyed_at`` set) as soon as every
    outbox message that carries it has been sent; nothing else can decrypt it.
    """

    __tablename__ = "delivery_secret_envelope"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    purpose: Mapped[str] = mapped_column(String(20))
    holder_id: Mapped[int] = mapped_column(ForeignKey("delivery_holder.id"), index=True)
    key_label: Mapped[str] = mapped_column(String(64))
    ciphertext: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    destroyed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True),
                                                          nullable=True)
    destroyed_reason: Mapped[str] = mapped_column(String(100), default="")

    __table_args__ = (
        CheckConstraint(_in("purpose", ENVELOPE_PURPOSES), name="purpose"),
        CheckConstraint("(ciphertext IS NULL) = (destroyed_at IS NOT NULL)",
                        name="destroyed_iff_erased"),
    )


class OutboxMessage(Base):
    """A notification written in the same transaction as the change that causes it.

    ``params`` is JSON without secrets; a secret travels only through ``envelope_id`` and is
    decrypted by the worker at send time. ``dedupe_key`` makes enqueuing idempotent.
    Workers claim rows (``sending`` with a lease in ``claimed_until``); an expired lease
    makes the row claimable again.
    """

    __tablename__ = "delivery_outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dedupe_key: Mapped[str] = mapped_column(String(200), unique=True)
    channel: Mapped[str] = mapped_column(String(10))
    recipient: Mapped[str] = mapped_column(String(254))
    template: Mapped[str] = mapped_column(String(50))
    params: Mapped[str] = mapped_column(Text)
    envelope_id: Mapped[str | None] = mapped_column(
        ForeignKey("delivery_secret_envelope.id"), nullable=True, index=True)
    holder_id: Mapped[int | None] = mapped_column(ForeignKey("delivery_holder.id"),
                                                  nullable=True)
    request_id: Mapped[int | None] = mapped_column(ForeignKey("delivery_request.id"),
                                                   nullable=True)
    status: Mapped[str] = mapped_column(String(10))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    claimed_by: Mapped[str | None] = mapped_column(String(100), nullable=True)
    claimed_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True),
                                                           nullable=True)
    last_error: Mapped[str] = mapped_column(String(500), default="")
    provider_ref: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    #: When a worker first claimed it (the start of the window a provider lookup searches).
    first_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True),
                                                              nullable=True)
    #: An earlier attempt may have been accepted by the provider (it timed out, or its worker
    #: died holding the claim): ask the provider before sending again.
    outcome_unknown: Mapped[bool] = mapped_column(Boolean, default=False,
                                                  server_default=text("false"))

    __table_args__ = (
        CheckConstraint(_in("status", OUTBOX_STATES), name="status"),
        CheckConstraint(_in("channel", CHANNELS), name="channel"),
        Index("ix_delivery_outbox_due", "status", "next_attempt_at"),
    )


class PinResetChallenge(Base):
    """A holder's PIN reset request: the one-time code's hash, its expiry and attempts."""

    __tablename__ = "delivery_pin_reset"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    holder_id: Mapped[int] = mapped_column(ForeignKey("delivery_holder.id"), index=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("delivery_request.id"))
    code_hash: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(10))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    __table_args__ = (CheckConstraint(_in("status", RESET_STATES), name="status"),)


class SignInChallenge(Base):
    """A holder's sign-in by one-time code: the code's hash, its expiry and attempts."""

    __tablename__ = "delivery_signin"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    holder_id: Mapped[int] = mapped_column(ForeignKey("delivery_holder.id"), index=True)
    code_hash: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(10))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    __table_args__ = (CheckConstraint(_in("status", RESET_STATES), name="status"),)


class ContactChange(Base):
    """A holder's new mobile or email, waiting for the holder to confirm it with the code
    sent to it. Until then PINs and codes keep going to the confirmed value on the holder."""

    __tablename__ = "delivery_contact_change"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    holder_id: Mapped[int] = mapped_column(ForeignKey("delivery_holder.id"), index=True)
    channel: Mapped[str] = mapped_column(String(10))
    old_value: Mapped[str] = mapped_column(String(254))
    new_value: Mapped[str] = mapped_column(String(254))
    code_hash: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(10))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer)
    requested_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    __table_args__ = (
        CheckConstraint(_in("status", CHANGE_STATES), name="status"),
        CheckConstraint(_in("channel", CHANNELS), name="channel"),
    )


class PinAttempt(Base):
    """Consecutive wrong user PINs per token label (the token layer's lockout counter)."""

    __tablename__ = "delivery_pin_attempt"

    token_label: Mapped[str] = mapped_column(String(64), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ExpiryWarning(Base):
    """One expiry warning queued for a certificate at one threshold (days before
    ``notAfter``). The unique index makes it once per certificate and threshold, however
    many workers look at once; the notices themselves are outbox rows."""

    __tablename__ = "delivery_expiry_warning"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    certificate_serial: Mapped[str] = mapped_column(String(40))
    threshold_days: Mapped[int] = mapped_column(Integer)
    holder_id: Mapped[int] = mapped_column(ForeignKey("delivery_holder.id"), index=True)
    not_after: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    queued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        Index("uq_delivery_expiry_warning", "certificate_serial", "threshold_days",
              unique=True),
    )


CAMPAIGN_OPEN = "open"  # opened; the newly elected may be imported
CAMPAIGN_IMPORTED = "imported"  # the list is in; requests are under way
CAMPAIGN_INSTALLED = "installed"  # the new councils are installed; outgoing revoked
CAMPAIGN_STATES = (CAMPAIGN_OPEN, CAMPAIGN_IMPORTED, CAMPAIGN_INSTALLED)
SCOPE_NATION = "nation"
SCOPE_REGION = "region"
SCOPE_PROVINCE = "province"
SCOPE_COMMUNES = "communes"
CAMPAIGN_SCOPES = (SCOPE_NATION, SCOPE_REGION, SCOPE_PROVINCE, SCOPE_COMMUNES)
FUNDING_QUOTA = "quota"  # replacements count against the year's quota
FUNDING_EXTRA = "extra"  # an extra allotment on the ledger, billed to the DGCL
CAMPAIGN_FUNDINGS = (FUNDING_QUOTA, FUNDING_EXTRA)


class Campaign(Base):
    """An election campaign: the newly elected of its scope are imported, their tokens
    prepared before ``installation_date``, and at installation the outgoing holders'
    certificates are revoked in bulk (``affiliationChanged``)."""

    __tablename__ = "delivery_campaign"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    installation_date: Mapped[date] = mapped_column(Date)
    scope_kind: Mapped[str] = mapped_column(String(10))
    #: JSON list: [] for the nation, a region's or province's code, or commune codes.
    scope_codes: Mapped[str] = mapped_column(Text)
    funding: Mapped[str] = mapped_column(String(10))
    status: Mapped[str] = mapped_column(String(10))
    opened_by: Mapped[str] = mapped_column(String(200))
    opened_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    imported_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    installed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True),
                                                          nullable=True)
    installed_by: Mapped[str | None] = mapped_column(String(200), nullable=True)

    __table_args__ = (
        CheckConstraint(_in("status", CAMPAIGN_STATES), name="status"),
        CheckConstraint(_in("scope_kind", CAMPAIGN_SCOPES), name="scope_kind"),
        CheckConstraint(_in("funding", CAMPAIGN_FUNDINGS), name="funding"),
    )


class CampaignEntry(Base):
    """One imported line: the incoming holder of a role in a commune, and whom they
    replace (nobody, themselves when re-elected, or an outgoing holder whose certificates
    are revoked at installation)."""

    __tablename__ = "delivery_campaign_entry"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("delivery_campaign.id"), index=True)
    line: Mapped[int] = mapped_column(Integer)
    commune_code: Mapped[str] = mapped_column(ForeignKey("commune.code"))
    province_code: Mapped[str] = mapped_column(ForeignKey("province.code"), index=True)
    role: Mapped[str] = mapped_column(String(30))
    incoming_holder_id: Mapped[int] = mapped_column(ForeignKey("delivery_holder.id"))
    incoming_mandate_id: Mapped[int] = mapped_column(ForeignKey("delivery_mandate.id"))
    re_elected: Mapped[bool] = mapped_column(Boolean)
    request_id: Mapped[int | None] = mapped_column(ForeignKey("delivery_request.id"),
                                                   nullable=True)
    outgoing_holder_id: Mapped[int | None] = mapped_column(ForeignKey("delivery_holder.id"),
                                                           nullable=True)
    outgoing_mandate_id: Mapped[int | None] = mapped_column(ForeignKey("delivery_mandate.id"),
                                                            nullable=True)
    #: The outgoing certificates to revoke at installation, space-separated serials.
    outgoing_serials: Mapped[str] = mapped_column(Text, default="")
    outgoing_revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True),
                                                                 nullable=True)

    __table_args__ = (
        Index("uq_delivery_campaign_entry_seat", "campaign_id", "commune_code", "role",
              unique=True),
    )

"""delivery: contacts, holders, requests and their timeline, courier batches, secret
envelopes, the outbox, PIN reset challenges and the wrong-PIN counter.

Revision ID: delivery_0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "delivery_0001"
down_revision = None
branch_labels = ("delivery",)
depends_on = ("quotas_0001", "pki_0001")

TZ = sa.DateTime(timezone=True)
REQUEST_STATES = ("submitted", "approved", "personalised", "shipped", "delivered",
                  "handed_over", "active", "rejected", "cancelled")
OPEN_STATES = ("submitted", "approved", "personalised", "shipped", "delivered",
               "handed_over")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def upgrade() -> None:
    op.create_table(
        "delivery_contact",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("province_code", sa.String(6), sa.ForeignKey("province.code"),
                  nullable=False),
        sa.Column("full_name", sa.String(200), nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("phone", sa.String(20), nullable=False),
        sa.Column("postal_address", sa.String(500), nullable=False),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("decision_reference", sa.String(100), nullable=False),
        sa.Column("decision_date", sa.Date, nullable=False),
        sa.Column("designated_by", sa.String(200), nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("designated_at", TZ, nullable=False),
        sa.Column("ended_at", TZ, nullable=True),
        sa.Column("replaced_by_id", sa.Integer, sa.ForeignKey("delivery_contact.id"),
                  nullable=True),
        sa.Column("recorded_by", sa.String(200), nullable=False),
    )
    op.create_index("ix_delivery_contact_province_code", "delivery_contact",
                    ["province_code"])
    op.create_index("uq_delivery_contact_active_province", "delivery_contact",
                    ["province_code"], unique=True, sqlite_where=sa.text("active"),
                    postgresql_where=sa.text("active"))

    op.create_table(
        "delivery_holder",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("cin", sa.String(8), nullable=False),
        sa.Column("given_name_fr", sa.String(100), nullable=False),
        sa.Column("surname_fr", sa.String(100), nullable=False),
        sa.Column("given_name_ar", sa.String(100), nullable=False),
        sa.Column("surname_ar", sa.String(100), nullable=False),
        sa.Column("role", sa.String(30), nullable=False),
        sa.Column("entity_kind", sa.String(10), nullable=False),
        sa.Column("commune_code", sa.String(12), sa.ForeignKey("commune.code"),
                  nullable=True),
        sa.Column("province_code", sa.String(6), sa.ForeignKey("province.code"),
                  nullable=False),
        sa.Column("mobile", sa.String(20), nullable=False),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("professional_email", sa.String(254), nullable=True),
        sa.Column("registered_by_contact_id", sa.Integer,
                  sa.ForeignKey("delivery_contact.id"), nullable=True),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
        sa.UniqueConstraint("cin", name="uq_delivery_holder_cin"),
        sa.CheckConstraint("entity_kind IN ('commune', 'services')", name="entity_kind"),
        sa.CheckConstraint("(entity_kind = 'commune') = (commune_code IS NOT NULL)",
                           name="commune_iff_commune"),
    )
    op.create_index("ix_delivery_holder_province_code", "delivery_holder", ["province_code"])

    op.create_table(
        "delivery_batch",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("province_code", sa.String(6), sa.ForeignKey("province.code"),
                  nullable=False),
        sa.Column("contact_id", sa.Integer, sa.ForeignKey("delivery_contact.id"),
                  nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("courier", sa.String(50), nullable=False),
        sa.Column("tracking_number", sa.String(20), nullable=True),
        sa.Column("prepared_at", TZ, nullable=False),
        sa.Column("prepared_by", sa.String(200), nullable=False),
        sa.Column("dispatched_at", TZ, nullable=True),
        sa.Column("dispatched_by", sa.String(200), nullable=True),
        sa.Column("received_at", TZ, nullable=True),
        sa.Column("received_by", sa.String(200), nullable=True),
        sa.UniqueConstraint("tracking_number", name="uq_delivery_batch_tracking_number"),
        sa.CheckConstraint(_in("status", ("preparing", "dispatched", "received")),
                           name="status"),
    )
    op.create_index("ix_delivery_batch_province_code", "delivery_batch", ["province_code"])
    op.create_index("uq_delivery_batch_preparing_province", "delivery_batch",
                    ["province_code"], unique=True,
                    sqlite_where=sa.text("status = 'preparing'"),
                    postgresql_where=sa.text("status = 'preparing'"))

    op.create_table(
        "delivery_secret_envelope",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("purpose", sa.String(20), nullable=False),
        sa.Column("holder_id", sa.Integer, sa.ForeignKey("delivery_holder.id"),
                  nullable=False),
        sa.Column("key_label", sa.String(64), nullable=False),
        sa.Column("ciphertext", sa.LargeBinary, nullable=True),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("destroyed_at", TZ, nullable=True),
        sa.Column("destroyed_reason", sa.String(100), nullable=False),
        sa.CheckConstraint(_in("purpose", ("initial_pin", "reset_pin", "reset_code")),
                           name="purpose"),
        sa.CheckConstraint("(ciphertext IS NULL) = (destroyed_at IS NOT NULL)",
                           name="destroyed_iff_erased"),
    )
    op.create_index("ix_delivery_secret_envelope_holder_id", "delivery_secret_envelope",
                    ["holder_id"])

    op.create_table(
        "delivery_request",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("holder_id", sa.Integer, sa.ForeignKey("delivery_holder.id"),
                  nullable=False),
        sa.Column("contact_id", sa.Integer, sa.ForeignKey("delivery_contact.id"),
                  nullable=False),
        sa.Column("province_code", sa.String(6), sa.ForeignKey("province.code"),
                  nullable=False),
        sa.Column("entity", sa.String(30), nullable=False),
        sa.Column("year", sa.Integer, nullable=False),
        sa.Column("token_form", sa.String(10), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("status_reason", sa.String(500), nullable=False),
        sa.Column("reservation_id", sa.Integer, sa.ForeignKey("quota_reservation.id"),
                  nullable=False),
        sa.Column("token_label", sa.String(32), nullable=True),
        sa.Column("certificate_serial", sa.String(64), nullable=True),
        sa.Column("certificate_not_after", TZ, nullable=True),
        sa.Column("batch_id", sa.Integer, sa.ForeignKey("delivery_batch.id"), nullable=True),
        sa.Column("pin_envelope_id", sa.String(36),
                  sa.ForeignKey("delivery_secret_envelope.id"), nullable=True),
        sa.Column("pin_sent_at", TZ, nullable=True),
        sa.Column("handed_over_to", sa.String(200), nullable=True),
        sa.Column("handed_over_at", TZ, nullable=True),
        sa.Column("handover_acknowledgement", sa.String(500), nullable=True),
        sa.Column("terms_version", sa.String(50), nullable=True),
        sa.Column("terms_accepted_at", TZ, nullable=True),
        sa.Column("pin_change_required", sa.Boolean, nullable=False),
        sa.Column("pin_changed_at", TZ, nullable=True),
        sa.Column("submitted_at", TZ, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
        sa.UniqueConstraint("token_label", name="uq_delivery_request_token_label"),
        sa.CheckConstraint(_in("status", REQUEST_STATES), name="status"),
        sa.CheckConstraint(_in("token_form", ("device", "hosted")), name="token_form"),
    )
    op.create_index("ix_delivery_request_holder_id", "delivery_request", ["holder_id"])
    op.create_index("ix_delivery_request_province_code", "delivery_request",
                    ["province_code"])
    op.create_index("ix_delivery_request_status", "delivery_request", ["status"])
    op.create_index("ix_delivery_request_batch_id", "delivery_request", ["batch_id"])
    op.create_index("uq_delivery_request_open_holder", "delivery_request", ["holder_id"],
                    unique=True, sqlite_where=sa.text(_in("status", OPEN_STATES)),
                    postgresql_where=sa.text(_in("status", OPEN_STATES)))

    op.create_table(
        "delivery_request_event",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("request_id", sa.Integer, sa.ForeignKey("delivery_request.id"),
                  nullable=False),
        sa.Column("from_status", sa.String(20), nullable=True),
        sa.Column("to_status", sa.String(20), nullable=False),
        sa.Column("at", TZ, nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("note", sa.String(500), nullable=False),
    )
    op.create_index("ix_delivery_request_event_request_id", "delivery_request_event",
                    ["request_id"])

    op.create_table(
        "delivery_outbox",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("dedupe_key", sa.String(200), nullable=False),
        sa.Column("channel", sa.String(10), nullable=False),
        sa.Column("recipient", sa.String(254), nullable=False),
        sa.Column("template", sa.String(50), nullable=False),
        sa.Column("params", sa.Text, nullable=False),
        sa.Column("envelope_id", sa.String(36), sa.ForeignKey("delivery_secret_envelope.id"),
                  nullable=True),
        sa.Column("holder_id", sa.Integer, sa.ForeignKey("delivery_holder.id"),
                  nullable=True),
        sa.Column("request_id", sa.Integer, sa.ForeignKey("delivery_request.id"),
                  nullable=True),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", TZ, nullable=False),
        sa.Column("claimed_by", sa.String(100), nullable=True),
        sa.Column("claimed_until", TZ, nullable=True),
        sa.Column("last_error", sa.String(500), nullable=False),
        sa.Column("provider_ref", sa.String(200), nullable=True),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("sent_at", TZ, nullable=True),
        sa.UniqueConstraint("dedupe_key", name="uq_delivery_outbox_dedupe_key"),
        sa.CheckConstraint(_in("status", ("pending", "sending", "sent", "dead")),
                           name="status"),
        sa.CheckConstraint(_in("channel", ("sms", "email")), name="channel"),
    )
    op.create_index("ix_delivery_outbox_envelope_id", "delivery_outbox", ["envelope_id"])
    op.create_index("ix_delivery_outbox_due", "delivery_outbox",
                    ["status", "next_attempt_at"])

    op.create_table(
        "delivery_pin_reset",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("holder_id", sa.Integer, sa.ForeignKey("delivery_holder.id"),
                  nullable=False),
        sa.Column("request_id", sa.Integer, sa.ForeignKey("delivery_request.id"),
                  nullable=False),
        sa.Column("code_hash", sa.String(200), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("max_attempts", sa.Integer, nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("expires_at", TZ, nullable=False),
        sa.Column("closed_at", TZ, nullable=True),
        sa.CheckConstraint(_in("status", ("open", "used", "failed")), name="status"),
    )
    op.create_index("ix_delivery_pin_reset_holder_id", "delivery_pin_reset", ["holder_id"])

    op.create_table(
        "delivery_pin_attempt",
        sa.Column("token_label", sa.String(64), primary_key=True),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
    )


def downgrade() -> None:
    for table in ("delivery_pin_attempt", "delivery_pin_reset", "delivery_outbox",
                  "delivery_request_event", "delivery_request", "delivery_secret_envelope",
                  "delivery_batch", "delivery_holder", "delivery_contact"):
        op.drop_table(table)

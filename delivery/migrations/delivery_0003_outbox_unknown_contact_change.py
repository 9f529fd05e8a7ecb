"""delivery: outbox attempts whose outcome is unknown (ask the provider before re-sending);
holders' contact changes waiting for confirmation; envelopes for their codes.

Revision ID: delivery_0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "delivery_0003"
down_revision = "delivery_0002"
branch_labels = None
depends_on = None

OLD = ("initial_pin", "reset_pin", "reset_code", "signing_code")
NEW = (*OLD, "contact_code")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _purposes(values: tuple[str, ...]) -> None:
    with op.batch_alter_table("delivery_secret_envelope") as batch:
        batch.drop_constraint("purpose", type_="check")
        batch.create_check_constraint("purpose", _in("purpose", values))


def upgrade() -> None:
    with op.batch_alter_table("delivery_outbox") as batch:
        batch.add_column(sa.Column("first_attempt_at", sa.DateTime(timezone=True),
                                   nullable=True))
        batch.add_column(sa.Column("outcome_unknown", sa.Boolean(), nullable=False,
                                   server_default=sa.text("false")))
    _purposes(NEW)
    op.create_table(
        "delivery_contact_change",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("holder_id", sa.Integer(), sa.ForeignKey("delivery_holder.id"),
                  nullable=False),
        sa.Column("channel", sa.String(10), nullable=False),
        sa.Column("old_value", sa.String(254), nullable=False),
        sa.Column("new_value", sa.String(254), nullable=False),
        sa.Column("code_hash", sa.String(200), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("requested_by", sa.String(100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(_in("status", ("pending", "confirmed", "superseded", "failed")),
                           name="status"),
        sa.CheckConstraint(_in("channel", ("sms", "email")), name="channel"),
    )
    op.create_index("ix_delivery_contact_change_holder_id", "delivery_contact_change",
                    ["holder_id"])


def downgrade() -> None:
    op.drop_index("ix_delivery_contact_change_holder_id", "delivery_contact_change")
    op.drop_table("delivery_contact_change")
    op.execute("DELETE FROM delivery_secret_envelope WHERE purpose = 'contact_code'")
    _purposes(OLD)
    with op.batch_alter_table("delivery_outbox") as batch:
        batch.drop_column("outcome_unknown")
        batch.drop_column("first_attempt_at")

"""delivery: expiry warnings, once per certificate and threshold.

Revision ID: delivery_0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "delivery_0004"
down_revision = "delivery_0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "delivery_expiry_warning",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("certificate_serial", sa.String(40), nullable=False),
        sa.Column("threshold_days", sa.Integer, nullable=False),
        sa.Column("holder_id", sa.Integer, sa.ForeignKey("delivery_holder.id"),
                  nullable=False),
        sa.Column("not_after", sa.DateTime(timezone=True), nullable=False),
        sa.Column("queued_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_delivery_expiry_warning_holder_id", "delivery_expiry_warning",
                    ["holder_id"])
    op.create_index("uq_delivery_expiry_warning", "delivery_expiry_warning",
                    ["certificate_serial", "threshold_days"], unique=True)


def downgrade() -> None:
    op.drop_table("delivery_expiry_warning")

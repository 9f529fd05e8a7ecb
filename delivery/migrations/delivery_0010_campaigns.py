"""delivery: election campaigns and their imported lines.

Revision ID: delivery_0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "delivery_0007"
down_revision = "delivery_0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "delivery_campaign",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("installation_date", sa.Date, nullable=False),
        sa.Column("scope_kind", sa.String(10), nullable=False),
        sa.Column("scope_codes", sa.Text, nullable=False),
        sa.Column("funding", sa.String(10), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("opened_by", sa.String(200), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("imported_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("installed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("installed_by", sa.String(200), nullable=True),
        sa.UniqueConstraint("name", name="uq_delivery_campaign_name"),
        sa.CheckConstraint("status IN ('open', 'imported', 'installed')", name="status"),
        sa.CheckConstraint("scope_kind IN ('nation', 'region', 'province', 'communes')",
                           name="scope_kind"),
        sa.CheckConstraint("funding IN ('quota', 'extra')", name="funding"),
    )
    op.create_table(
        "delivery_campaign_entry",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("campaign_id", sa.Integer, sa.ForeignKey("delivery_campaign.id"),
                  nullable=False),
        sa.Column("line", sa.Integer, nullable=False),
        sa.Column("commune_code", sa.String(12), sa.ForeignKey("commune.code"),
                  nullable=False),
        sa.Column("province_code", sa.String(6), sa.ForeignKey("province.code"),
                  nullable=False),
        sa.Column("role", sa.String(30), nullable=False),
        sa.Column("incoming_holder_id", sa.Integer, sa.ForeignKey("delivery_holder.id"),
                  nullable=False),
        sa.Column("incoming_mandate_id", sa.Integer, sa.ForeignKey("delivery_mandate.id"),
                  nullable=False),
        sa.Column("re_elected", sa.Boolean, nullable=False),
        sa.Column("request_id", sa.Integer, sa.ForeignKey("delivery_request.id"),
                  nullable=True),
        sa.Column("outgoing_holder_id", sa.Integer, sa.ForeignKey("delivery_holder.id"),
                  nullable=True),
        sa.Column("outgoing_mandate_id", sa.Integer, sa.ForeignKey("delivery_mandate.id"),
                  nullable=True),
        sa.Column("outgoing_serials", sa.Text, nullable=False),
        sa.Column("outgoing_revoked_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_delivery_campaign_entry_campaign_id", "delivery_campaign_entry",
                    ["campaign_id"])
    op.create_index("ix_delivery_campaign_entry_province_code", "delivery_campaign_entry",
                    ["province_code"])
    op.create_index("uq_delivery_campaign_entry_seat", "delivery_campaign_entry",
                    ["campaign_id", "commune_code", "role"], unique=True)


def downgrade() -> None:
    op.drop_table("delivery_campaign_entry")
    op.drop_table("delivery_campaign")

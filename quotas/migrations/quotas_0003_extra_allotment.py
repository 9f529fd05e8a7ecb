"""quotas: extra allotments paid by a third party (an election campaign's replacements,
billed to the DGCL).

Revision ID: quotas_0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "quotas_0002"
down_revision = "quotas_0002r"  # after the replacements policy (main)
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "quota_extra_allotment",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("entity_kind", sa.String(10), nullable=False),
        sa.Column("entity_code", sa.String(12), nullable=False),
        sa.Column("year", sa.Integer, nullable=False),
        sa.Column("count", sa.Integer, nullable=False),
        sa.Column("billed_to", sa.String(50), nullable=False),
        sa.Column("reference", sa.String(200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("count > 0", name="positive"),
        sa.UniqueConstraint("reference", name="uq_quota_extra_allotment_reference"),
    )
    op.create_index("ix_quota_extra_allotment_entity_code", "quota_extra_allotment",
                    ["entity_code"])


def downgrade() -> None:
    op.drop_table("quota_extra_allotment")

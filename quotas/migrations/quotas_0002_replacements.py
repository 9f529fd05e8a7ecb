"""quotas: whether a replacement token consumes quota (policy data); free reservations.

Revision ID: quotas_0002r
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "quotas_0002r"
down_revision = "quotas_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("quota_policy") as batch:
        batch.add_column(sa.Column("replacement_consumes_quota", sa.Boolean, nullable=False,
                                   server_default=sa.true()))
    with op.batch_alter_table("quota_reservation") as batch:
        batch.add_column(sa.Column("free", sa.Boolean, nullable=False,
                                   server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("quota_reservation") as batch:
        batch.drop_column("free")
    with op.batch_alter_table("quota_policy") as batch:
        batch.drop_column("replacement_consumes_quota")

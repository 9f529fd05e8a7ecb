"""delivery: a holder's civility, so that titles agree in French and Arabic.

Holders registered before keep the titles they were certified with (``mr``).

Revision ID: delivery_0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "delivery_0005"
down_revision = "delivery_0005r"  # after the renewal branch (main)
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("delivery_holder") as batch:
        batch.add_column(sa.Column("civility", sa.String(3), nullable=False,
                                   server_default="mr"))
        batch.create_check_constraint("civility", "civility IN ('mr', 'mrs')")


def downgrade() -> None:
    with op.batch_alter_table("delivery_holder") as batch:
        batch.drop_constraint("civility", type_="check")
        batch.drop_column("civility")

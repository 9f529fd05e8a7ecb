"""delivery: a request's kind (new, renewal, replacement) and the request it follows.

Revision ID: delivery_0005r
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "delivery_0005r"
down_revision = "delivery_i14_lang"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("delivery_request") as batch:
        batch.add_column(sa.Column("kind", sa.String(12), nullable=False,
                                   server_default="new"))
        batch.add_column(sa.Column("follows_request_id", sa.Integer, nullable=True))
        batch.create_foreign_key("fk_delivery_request_follows", "delivery_request",
                                 ["follows_request_id"], ["id"])


def downgrade() -> None:
    with op.batch_alter_table("delivery_request") as batch:
        batch.drop_constraint("fk_delivery_request_follows", type_="foreignkey")
        batch.drop_column("follows_request_id")
        batch.drop_column("kind")

"""delivery: a holder's preferred language (each SMS in one language) and whether notices
without a secret go to the professional address.

Revision ID: delivery_i14_lang
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "delivery_i14_lang"
down_revision = "delivery_i14_signin"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("delivery_holder") as batch:
        batch.add_column(sa.Column("preferred_lang", sa.String(2), nullable=False,
                                   server_default="fr"))
        batch.add_column(sa.Column("notices_to_professional", sa.Boolean, nullable=False,
                                   server_default=sa.text("false")))
        batch.create_check_constraint("preferred_lang", "preferred_lang IN ('fr', 'ar')")


def downgrade() -> None:
    with op.batch_alter_table("delivery_holder") as batch:
        batch.drop_constraint("preferred_lang", type_="check")
        batch.drop_column("notices_to_professional")
        batch.drop_column("preferred_lang")

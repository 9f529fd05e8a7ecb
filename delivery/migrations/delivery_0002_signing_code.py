"""delivery: secret envelopes may carry the one-time code of a remote signature.

Revision ID: delivery_0002
"""

from __future__ import annotations

from alembic import op

revision = "delivery_0002"
down_revision = "delivery_0001"
branch_labels = None
depends_on = None

OLD = ("initial_pin", "reset_pin", "reset_code")
NEW = (*OLD, "signing_code")


def _in(values: tuple[str, ...]) -> str:
    return f"purpose IN ({', '.join(repr(v) for v in values)})"


def _replace(values: tuple[str, ...]) -> None:
    with op.batch_alter_table("delivery_secret_envelope") as batch:
        batch.drop_constraint("purpose", type_="check")
        batch.create_check_constraint("purpose", _in(values))


def upgrade() -> None:
    _replace(NEW)


def downgrade() -> None:
    op.execute("DELETE FROM delivery_secret_envelope WHERE purpose = 'signing_code'")
    _replace(OLD)

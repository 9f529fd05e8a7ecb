"""delivery: holders' sign-in by a one-time code sent by SMS; envelopes for those codes.

Revision ID: delivery_i14_signin
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "delivery_i14_signin"
down_revision = "delivery_0004"
branch_labels = None
depends_on = None

OLD = ("initial_pin", "reset_pin", "reset_code", "signing_code", "contact_code")
NEW = (*OLD, "signin_code")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _purposes(values: tuple[str, ...]) -> None:
    with op.batch_alter_table("delivery_secret_envelope") as batch:
        batch.drop_constraint("purpose", type_="check")
        batch.create_check_constraint("purpose", _in("purpose", values))


def upgrade() -> None:
    _purposes(NEW)
    op.create_table(
        "delivery_signin",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("holder_id", sa.Integer, sa.ForeignKey("delivery_holder.id"),
                  nullable=False),
        sa.Column("code_hash", sa.String(200), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("max_attempts", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(_in("status", ("open", "used", "failed")), name="status"),
    )
    op.create_index("ix_delivery_signin_holder_id", "delivery_signin", ["holder_id"])


def downgrade() -> None:
    op.drop_index("ix_delivery_signin_holder_id", "delivery_signin")
    op.drop_table("delivery_signin")
    op.execute("DELETE FROM delivery_secret_envelope WHERE purpose = 'signin_code'")
    _purposes(OLD)

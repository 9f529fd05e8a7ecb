"""api: the TOTP second factor (sealed secret, last step), pending second-factor sessions,
hashed recovery codes.

Revision ID: api_i14_totp
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "api_i14_totp"
down_revision = "api_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_user") as batch:
        batch.add_column(sa.Column("totp_sealed", sa.LargeBinary, nullable=True))
        batch.add_column(sa.Column("totp_enabled_at", sa.DateTime(timezone=True),
                                   nullable=True))
        batch.add_column(sa.Column("totp_last_step", sa.Integer, nullable=True))
    with op.batch_alter_table("api_session") as batch:
        batch.add_column(sa.Column("second_factor_pending", sa.Boolean, nullable=False,
                                   server_default=sa.text("false")))
        batch.add_column(sa.Column("attempts", sa.Integer, nullable=False,
                                   server_default="0"))
    op.create_table(
        "api_recovery_code",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("api_user.id"), nullable=False),
        sa.Column("code_hash", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("code_hash", name="uq_api_recovery_code_code_hash"),
    )
    op.create_index("ix_api_recovery_code_user_id", "api_recovery_code", ["user_id"])


def downgrade() -> None:
    op.drop_index("ix_api_recovery_code_user_id", "api_recovery_code")
    op.drop_table("api_recovery_code")
    with op.batch_alter_table("api_session") as batch:
        batch.drop_column("attempts")
        batch.drop_column("second_factor_pending")
    with op.batch_alter_table("api_user") as batch:
        batch.drop_column("totp_last_step")
        batch.drop_column("totp_enabled_at")
        batch.drop_column("totp_sealed")

"""api: users, API keys, bearer sessions, idempotency records, rate-limit counters.

Revision ID: api_0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "api_0001"
down_revision = None
branch_labels = ("api",)
depends_on = "quotas_0001"


def upgrade() -> None:
    op.create_table(
        "api_user",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("display_name", sa.String(200), nullable=False),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("province_code", sa.String(6), sa.ForeignKey("province.code"),
                  nullable=True),
        sa.Column("holder_id", sa.Integer, nullable=True),
        sa.Column("password_hash", sa.String(200), nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_login_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("username", name="uq_api_user_username"),
        sa.CheckConstraint("role IN ('dgcl_admin', 'operator', 'contact', 'holder')",
                           name="role"),
        sa.CheckConstraint("role <> 'contact' OR province_code IS NOT NULL",
                           name="contact_province"),
    )
    op.create_index("ix_api_user_province_code", "api_user", ["province_code"])
    op.create_index("ix_api_user_holder_id", "api_user", ["holder_id"])
    op.create_table(
        "api_key",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("prefix", name="uq_api_key_prefix"),
        sa.CheckConstraint("role IN ('platform')", name="role"),
    )
    op.create_table(
        "api_session",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("api_user.id"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("token_hash", name="uq_api_session_token_hash"),
    )
    op.create_index("ix_api_session_user_id", "api_session", ["user_id"])
    op.create_table(
        "api_idempotency",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("principal", sa.String(100), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("location", sa.String(500), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("principal", "key", name="uq_api_idempotency_key"),
    )
    op.create_index("ix_api_idempotency_created_at", "api_idempotency", ["created_at"])
    op.create_table(
        "api_rate_counter",
        sa.Column("bucket", sa.String(200), primary_key=True),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("count", sa.Integer, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("api_rate_counter")
    op.drop_index("ix_api_idempotency_created_at", "api_idempotency")
    op.drop_table("api_idempotency")
    op.drop_index("ix_api_session_user_id", "api_session")
    op.drop_table("api_session")
    op.drop_table("api_key")
    op.drop_index("ix_api_user_holder_id", "api_user")
    op.drop_index("ix_api_user_province_code", "api_user")
    op.drop_table("api_user")

"""signing: OAuth 2.0 authorisation codes (PKCE) and the redirect URIs of API clients.

Revision ID: signing_0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "signing_0002"
down_revision = "signing_0001"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "signing_oauth_redirect",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("client", sa.String(100), nullable=False),
        sa.Column("redirect_uri", sa.String(500), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.UniqueConstraint("client", "redirect_uri", name="uq_signing_oauth_redirect"),
    )
    op.create_index("ix_signing_oauth_redirect_client", "signing_oauth_redirect", ["client"])
    op.create_table(
        "signing_oauth_code",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("code_hash", sa.String(64), nullable=False),
        sa.Column("client", sa.String(100), nullable=False),
        sa.Column("redirect_uri", sa.String(500), nullable=False),
        sa.Column("code_challenge", sa.String(128), nullable=False),
        sa.Column("authorization_id", sa.String(36), nullable=False),
        sa.Column("credential_id", sa.String(64), nullable=False),
        sa.Column("num_signatures", sa.Integer, nullable=False),
        sa.Column("sad_box", sa.LargeBinary, nullable=True),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("expires_at", TZ, nullable=False),
        sa.Column("used_at", TZ, nullable=True),
        sa.UniqueConstraint("code_hash", name="uq_signing_oauth_code_code_hash"),
        sa.CheckConstraint("status IN ('open', 'used')", name="status"),
        sa.CheckConstraint("status = 'open' OR sad_box IS NULL", name="box_erased_when_used"),
    )


def downgrade() -> None:
    op.drop_table("signing_oauth_code")
    op.drop_table("signing_oauth_redirect")

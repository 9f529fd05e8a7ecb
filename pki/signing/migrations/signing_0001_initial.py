"""signing: one-time codes and signature activation data of remote signing (pki.signing).

Its own Alembic branch (``signing``), so that the pki branch's own revisions never collide
with it.

Revision ID: signing_0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "signing_0001"
down_revision = None
branch_labels = ("signing",)
depends_on = ("pki_0001",)

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "signing_challenge",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("certificate_id", sa.Integer, sa.ForeignKey("pki_certificate.id"),
                  nullable=False),
        sa.Column("client", sa.String(100), nullable=False),
        sa.Column("code_hash", sa.String(200), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("max_attempts", sa.Integer, nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("expires_at", TZ, nullable=False),
        sa.Column("closed_at", TZ, nullable=True),
        sa.CheckConstraint("status IN ('open', 'used', 'failed')", name="status"),
    )
    op.create_index("ix_signing_challenge_certificate_id", "signing_challenge",
                    ["certificate_id"])
    op.create_table(
        "signing_authorization",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("sad_hash", sa.String(64), nullable=False),
        sa.Column("certificate_id", sa.Integer, sa.ForeignKey("pki_certificate.id"),
                  nullable=False),
        sa.Column("client", sa.String(100), nullable=False),
        sa.Column("purpose", sa.String(10), nullable=False),
        sa.Column("hash_algorithm", sa.String(10), nullable=False),
        sa.Column("digests_hash", sa.String(64), nullable=False),
        sa.Column("num_signatures", sa.Integer, nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("pin_box", sa.LargeBinary, nullable=True),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("expires_at", TZ, nullable=False),
        sa.Column("used_at", TZ, nullable=True),
        sa.UniqueConstraint("sad_hash", name="uq_signing_authorization_sad_hash"),
        sa.CheckConstraint("status IN ('active', 'used')", name="status"),
        sa.CheckConstraint("purpose IN ('hash', 'document')", name="purpose"),
        sa.CheckConstraint("status = 'active' OR pin_box IS NULL",
                           name="box_erased_when_used"),
    )
    op.create_index("ix_signing_authorization_certificate_id", "signing_authorization",
                    ["certificate_id"])
    op.create_index("ix_signing_authorization_expires_at", "signing_authorization",
                    ["expires_at"])


def downgrade() -> None:
    op.drop_table("signing_authorization")
    op.drop_table("signing_challenge")

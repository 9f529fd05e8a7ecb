"""signing: public records of stamped signatures (the QR code's status page).

Revision ID: signing_0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "signing_0003"
down_revision = "signing_0002"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "signing_record",
        sa.Column("public_id", sa.String(32), primary_key=True),
        sa.Column("certificate_id", sa.Integer, sa.ForeignKey("pki_certificate.id"),
                  nullable=False),
        sa.Column("serial", sa.String(40), nullable=False),
        sa.Column("signed_at", TZ, nullable=False),
        sa.Column("name_fr", sa.String(120), nullable=False),
        sa.Column("name_ar", sa.String(120), nullable=False),
        sa.Column("title_fr", sa.String(120), nullable=False),
        sa.Column("title_ar", sa.String(120), nullable=False),
        sa.Column("organisation_fr", sa.String(120), nullable=False),
        sa.Column("organisation_ar", sa.String(120), nullable=False),
        sa.Column("document_name", sa.String(200), nullable=True),
    )
    op.create_index("ix_signing_record_certificate_id", "signing_record", ["certificate_id"])


def downgrade() -> None:
    op.drop_index("ix_signing_record_certificate_id", table_name="signing_record")
    op.drop_table("signing_record")

"""pki: authorities, certificates, CRLs and pre-signed OCSP responses.

Revision ID: pki_0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "pki_0001"
down_revision = None
branch_labels = ("pki",)
depends_on = "core_0001"


def upgrade() -> None:
    op.create_table(
        "pki_authority",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("subject", sa.String(500), nullable=False),
        sa.Column("serial", sa.String(40), nullable=False),
        sa.Column("parent_id", sa.Integer, sa.ForeignKey("pki_authority.id"), nullable=True),
        sa.Column("token_label", sa.String(32), nullable=False),
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.Column("key_type", sa.String(20), nullable=False),
        sa.Column("name_hash", sa.String(40), nullable=False),
        sa.Column("key_hash", sa.String(40), nullable=False),
        sa.Column("not_before", sa.DateTime(timezone=True), nullable=False),
        sa.Column("not_after", sa.DateTime(timezone=True), nullable=False),
        sa.Column("der", sa.LargeBinary, nullable=False),
        sa.Column("crl_number", sa.Integer, nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("serial", name="uq_pki_authority_serial"),
        sa.CheckConstraint("kind IN ('root', 'issuing')", name="kind"),
    )
    op.create_index("ix_pki_authority_key_hash", "pki_authority", ["key_hash"])
    op.create_table(
        "pki_certificate",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("serial", sa.String(40), nullable=False),
        sa.Column("authority_id", sa.Integer, sa.ForeignKey("pki_authority.id"),
                  nullable=False),
        sa.Column("profile", sa.String(10), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("subject", sa.String(1000), nullable=False),
        sa.Column("subject_der", sa.LargeBinary, nullable=False),
        sa.Column("cin", sa.String(20), nullable=True),
        sa.Column("given_name", sa.String(200), nullable=True),
        sa.Column("surname", sa.String(200), nullable=True),
        sa.Column("title", sa.String(200), nullable=True),
        sa.Column("organization", sa.String(200), nullable=True),
        sa.Column("token_label", sa.String(32), nullable=False),
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.Column("key_type", sa.String(20), nullable=False),
        sa.Column("public_key", sa.LargeBinary, nullable=False),
        sa.Column("not_before", sa.DateTime(timezone=True), nullable=False),
        sa.Column("not_after", sa.DateTime(timezone=True), nullable=False),
        sa.Column("der", sa.LargeBinary, nullable=True),
        sa.Column("fingerprint", sa.String(64), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revocation_reason", sa.String(30), nullable=True),
        sa.Column("suspended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("replaces_id", sa.Integer, sa.ForeignKey("pki_certificate.id"),
                  nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("serial", name="uq_pki_certificate_serial"),
        sa.CheckConstraint("profile IN ('holder', 'ocsp', 'tsa')", name="profile"),
        sa.CheckConstraint(
            "status IN ('prepared', 'issued', 'suspended', 'revoked', 'abandoned')",
            name="status"),
        sa.CheckConstraint(
            "status NOT IN ('issued', 'suspended', 'revoked') OR der IS NOT NULL",
            name="signed_has_der"),
    )
    op.create_index("ix_pki_certificate_authority_id", "pki_certificate", ["authority_id"])
    op.create_index("ix_pki_certificate_status", "pki_certificate", ["status"])
    op.create_index("ix_pki_certificate_cin", "pki_certificate", ["cin"])
    op.create_table(
        "pki_crl",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("authority_id", sa.Integer, sa.ForeignKey("pki_authority.id"),
                  nullable=False),
        sa.Column("number", sa.Integer, nullable=False),
        sa.Column("this_update", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_update", sa.DateTime(timezone=True), nullable=False),
        sa.Column("entries", sa.Integer, nullable=False),
        sa.Column("der", sa.LargeBinary, nullable=False),
        sa.UniqueConstraint("authority_id", "number", name="uq_pki_crl_number"),
    )
    op.create_table(
        "pki_ocsp_response",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("authority_id", sa.Integer, sa.ForeignKey("pki_authority.id"),
                  nullable=False),
        sa.Column("serial", sa.String(40), nullable=False),
        sa.Column("cert_status", sa.String(10), nullable=False),
        sa.Column("this_update", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_update", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("der", sa.LargeBinary, nullable=False),
        sa.UniqueConstraint("authority_id", "serial", name="uq_pki_ocsp_response_serial"),
    )
    op.create_index("ix_pki_ocsp_response_updated_at", "pki_ocsp_response", ["updated_at"])


def downgrade() -> None:
    op.drop_index("ix_pki_ocsp_response_updated_at", "pki_ocsp_response")
    op.drop_table("pki_ocsp_response")
    op.drop_table("pki_crl")
    for index in ("ix_pki_certificate_cin", "ix_pki_certificate_status",
                  "ix_pki_certificate_authority_id"):
        op.drop_index(index, "pki_certificate")
    op.drop_table("pki_certificate")
    op.drop_index("ix_pki_authority_key_hash", "pki_authority")
    op.drop_table("pki_authority")

"""quotas: territory, census figures, policies, ledger, reservations, partnerships.

Revision ID: quotas_0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "quotas_0001"
down_revision = None
branch_labels = ("quotas",)
depends_on = "core_0001"


def upgrade() -> None:
    op.create_table(
        "region",
        sa.Column("code", sa.String(2), primary_key=True),
        sa.Column("name_fr", sa.String(200), nullable=False),
        sa.Column("name_ar", sa.String(200), nullable=False),
    )
    op.create_table(
        "province",
        sa.Column("code", sa.String(6), primary_key=True),
        sa.Column("region_code", sa.String(2), sa.ForeignKey("region.code"), nullable=False),
        sa.Column("name_fr", sa.String(200), nullable=False),
        sa.Column("name_ar", sa.String(200), nullable=False),
    )
    op.create_index("ix_province_region_code", "province", ["region_code"])
    op.create_table(
        "commune",
        sa.Column("code", sa.String(12), primary_key=True),
        sa.Column("province_code", sa.String(6), sa.ForeignKey("province.code"),
                  nullable=False),
        sa.Column("name_fr", sa.String(200), nullable=False),
        sa.Column("name_ar", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.CheckConstraint("kind IN ('urbaine', 'rurale', 'arrondissement')", name="kind"),
    )
    op.create_index("ix_commune_province_code", "commune", ["province_code"])
    op.create_table(
        "census_population",
        sa.Column("commune_code", sa.String(12), sa.ForeignKey("commune.code"),
                  primary_key=True),
        sa.Column("census_year", sa.Integer, primary_key=True),
        sa.Column("population", sa.Integer, nullable=False),
    )
    op.create_table(
        "quota_policy",
        sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("census_year", sa.Integer, nullable=False),
        sa.Column("first_year", sa.Integer, nullable=False),
        sa.Column("services_count", sa.Integer, nullable=False),
        sa.Column("description", sa.String(500), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "quota_tier",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("policy_version", sa.Integer, sa.ForeignKey("quota_policy.version"),
                  nullable=False),
        sa.Column("name", sa.String(50), nullable=False),
        sa.Column("min_population", sa.Integer, nullable=False),
        sa.Column("max_population", sa.Integer, nullable=True),
        sa.Column("yearly_count", sa.Integer, nullable=False),
    )
    op.create_index("ix_quota_tier_policy_version", "quota_tier", ["policy_version"])
    op.create_table(
        "quota_ledger",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("entity_kind", sa.String(10), nullable=False),
        sa.Column("entity_code", sa.String(12), nullable=False),
        sa.Column("year", sa.Integer, nullable=False),
        sa.Column("policy_version", sa.Integer, sa.ForeignKey("quota_policy.version"),
                  nullable=False),
        sa.Column("tier", sa.String(50), nullable=False),
        sa.Column("population", sa.Integer, nullable=True),
        sa.Column("census_year", sa.Integer, nullable=True),
        sa.Column("allotted", sa.Integer, nullable=False),
        sa.Column("extra", sa.Integer, nullable=False),
        sa.Column("reserved", sa.Integer, nullable=False),
        sa.Column("consumed", sa.Integer, nullable=False),
        sa.Column("released", sa.Integer, nullable=False),
        sa.UniqueConstraint("entity_kind", "entity_code", "year",
                            name="uq_quota_ledger_entity"),
        sa.CheckConstraint("reserved >= 0 AND consumed >= 0 AND released >= 0",
                           name="nonneg"),
        sa.CheckConstraint("reserved + consumed <= allotted + extra", name="never_over"),
    )
    op.create_table(
        "quota_reservation",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("ledger_id", sa.Integer, sa.ForeignKey("quota_ledger.id"), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("reference", sa.String(100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_quota_reservation_ledger_id", "quota_reservation", ["ledger_id"])
    op.create_table(
        "quota_partnership",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("commune_code", sa.String(12), sa.ForeignKey("commune.code"),
                  nullable=False),
        sa.Column("year", sa.Integer, nullable=False),
        sa.Column("count", sa.Integer, nullable=False),
        sa.Column("unit_price_mad", sa.Numeric(12, 2), nullable=False),
        sa.Column("signed_on", sa.Date, nullable=False),
        sa.Column("reference", sa.String(100), nullable=False),
        sa.CheckConstraint("count > 0", name="positive"),
    )
    op.create_index("ix_quota_partnership_commune_code", "quota_partnership",
                    ["commune_code"])


def downgrade() -> None:
    for table in ("quota_partnership", "quota_reservation", "quota_ledger", "quota_tier",
                  "quota_policy", "census_population", "commune", "province", "region"):
        op.drop_table(table)

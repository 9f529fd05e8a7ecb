"""delivery: mandates. A holder's role and entity move into a first mandate per holder
(started the day the holder was registered); each request belongs to its holder's mandate.

Revision ID: delivery_0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "delivery_0006"
down_revision = "delivery_0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "delivery_mandate",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("holder_id", sa.Integer, sa.ForeignKey("delivery_holder.id"),
                  nullable=False),
        sa.Column("role", sa.String(30), nullable=False),
        sa.Column("entity_kind", sa.String(10), nullable=False),
        sa.Column("commune_code", sa.String(12), sa.ForeignKey("commune.code"),
                  nullable=True),
        sa.Column("province_code", sa.String(6), sa.ForeignKey("province.code"),
                  nullable=False),
        sa.Column("professional_email", sa.String(254), nullable=True),
        sa.Column("started_on", sa.Date, nullable=False),
        sa.Column("ended_on", sa.Date, nullable=True),
        sa.Column("end_reason", sa.String(200), nullable=False),
        sa.Column("successor_id", sa.Integer, sa.ForeignKey("delivery_mandate.id"),
                  nullable=True),
        sa.Column("campaign_id", sa.Integer, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_by", sa.String(200), nullable=True),
        sa.CheckConstraint("entity_kind IN ('commune', 'services')", name="entity_kind"),
        sa.CheckConstraint("(entity_kind = 'commune') = (commune_code IS NOT NULL)",
                           name="commune_iff_commune"),
    )
    op.create_index("ix_delivery_mandate_holder_id", "delivery_mandate", ["holder_id"])
    op.create_index("ix_delivery_mandate_commune_code", "delivery_mandate", ["commune_code"])
    op.create_index("ix_delivery_mandate_province_code", "delivery_mandate", ["province_code"])
    op.create_index("uq_delivery_mandate_current_holder", "delivery_mandate", ["holder_id"],
                    unique=True, sqlite_where=sa.text("ended_on IS NULL"),
                    postgresql_where=sa.text("ended_on IS NULL"))
    # Today's holders: their role and entity become their first mandate (kept in force).
    day = ("DATE(created_at)" if op.get_bind().dialect.name == "sqlite"
           else "CAST(created_at AS DATE)")
    op.execute(
        "INSERT INTO delivery_mandate (holder_id, role, entity_kind, commune_code, "
        "province_code, professional_email, started_on, end_reason, created_at, created_by) "
        "SELECT id, role, entity_kind, commune_code, province_code, professional_email, "
        f"{day}, '', created_at, 'migration delivery_0006' "
        "FROM delivery_holder")
    with op.batch_alter_table("delivery_request") as batch:
        batch.add_column(sa.Column("mandate_id", sa.Integer, nullable=True))
    op.execute(
        "UPDATE delivery_request SET mandate_id = (SELECT m.id FROM delivery_mandate m "
        "WHERE m.holder_id = delivery_request.holder_id)")
    with op.batch_alter_table("delivery_request") as batch:
        batch.alter_column("mandate_id", existing_type=sa.Integer, nullable=False)
        batch.create_foreign_key("fk_delivery_request_mandate_id_delivery_mandate",
                                 "delivery_mandate", ["mandate_id"], ["id"])
        batch.create_index("ix_delivery_request_mandate_id", ["mandate_id"])


def downgrade() -> None:
    with op.batch_alter_table("delivery_request") as batch:
        batch.drop_index("ix_delivery_request_mandate_id")
        batch.drop_constraint("fk_delivery_request_mandate_id_delivery_mandate",
                              type_="foreignkey")
        batch.drop_column("mandate_id")
    op.drop_table("delivery_mandate")

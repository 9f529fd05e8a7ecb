"""Tables of the quotas package: the territory, census figures, policies and the ledger."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Integer,
    Numeric,
    String,
    UniqueConstraint,
    false,
    true,
)
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base

COMMUNE_KINDS = ("urbaine", "rurale", "arrondissement")
ENTITY_COMMUNE = "commune"
ENTITY_SERVICES = "services"  # a prefecture/province's decentralised Interior services


class Region(Base):
    __tablename__ = "region"

    code: Mapped[str] = mapped_column(String(2), primary_key=True)
    name_fr: Mapped[str] = mapped_column(String(200))
    name_ar: Mapped[str] = mapped_column(String(200))


class Province(Base):
    __tablename__ = "province"

    code: Mapped[str] = mapped_column(String(6), primary_key=True)
    region_code: Mapped[str] = mapped_column(ForeignKey("region.code"), index=True)
    name_fr: Mapped[str] = mapped_column(String(200))
    name_ar: Mapped[str] = mapped_column(String(200))


class Commune(Base):
    """A commune, or an arrondissement of one of the six big cities.

    Arrondissements are kept for reference but are never quota entities and never added to
    population totals: their people are already counted in their city's commune.
    """

    __tablename__ = "commune"

    code: Mapped[str] = mapped_column(String(12), primary_key=True)
    province_code: Mapped[str] = mapped_column(ForeignKey("province.code"), index=True)
    name_fr: Mapped[str] = mapped_column(String(200))
    name_ar: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(20))

    __table_args__ = (
        CheckConstraint("kind IN ('urbaine', 'rurale', 'arrondissement')", name="kind"),
    )


class CensusPopulation(Base):
    __tablename__ = "census_population"

    commune_code: Mapped[str] = mapped_column(ForeignKey("commune.code"), primary_key=True)
    census_year: Mapped[int] = mapped_column(Integer, primary_key=True)
    population: Mapped[int] = mapped_column(Integer)


class QuotaPolicy(Base):
    """A version of the quota rules. The version in force for a year is the highest
    version whose ``first_year`` is not after it."""

    __tablename__ = "quota_policy"

    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    census_year: Mapped[int] = mapped_column(Integer)
    first_year: Mapped[int] = mapped_column(Integer)
    services_count: Mapped[int] = mapped_column(Integer)
    description: Mapped[str] = mapped_column(String(500), default="")
    # whether a replacement token (lost, stolen, damaged) takes one of the year's quota
    replacement_consumes_quota: Mapped[bool] = mapped_column(Boolean, default=True,
                                                             server_default=true())
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class QuotaTier(Base):
    """Population bounds (both inclusive; ``max_population`` null = no upper bound)."""

    __tablename__ = "quota_tier"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    policy_version: Mapped[int] = mapped_column(ForeignKey("quota_policy.version"), index=True)
    name: Mapped[str] = mapped_column(String(50))
    min_population: Mapped[int] = mapped_column(Integer)
    max_population: Mapped[int | None] = mapped_column(Integer, nullable=True)
    yearly_count: Mapped[int] = mapped_column(Integer)


class LedgerEntry(Base):
    """One entity's quota for one calendar year.

    ``allotted`` and ``tier`` are a snapshot taken when the row is first needed, so a later
    census or policy never rewrites a year already under way. Partnership extras live in
    ``extra``. Invariant, enforced by a CHECK and by conditional updates:
    ``reserved + consumed <= allotted + extra``.
    """

    __tablename__ = "quota_ledger"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    entity_kind: Mapped[str] = mapped_column(String(10))
    entity_code: Mapped[str] = mapped_column(String(12))
    year: Mapped[int] = mapped_column(Integer)
    policy_version: Mapped[int] = mapped_column(ForeignKey("quota_policy.version"))
    tier: Mapped[str] = mapped_column(String(50))
    population: Mapped[int | None] = mapped_column(Integer, nullable=True)
    census_year: Mapped[int | None] = mapped_column(Integer, nullable=True)
    allotted: Mapped[int] = mapped_column(Integer)
    extra: Mapped[int] = mapped_column(Integer, default=0)
    reserved: Mapped[int] = mapped_column(Integer, default=0)
    consumed: Mapped[int] = mapped_column(Integer, default=0)
    released: Mapped[int] = mapped_column(Integer, default=0)

    __table_args__ = (
        UniqueConstraint("entity_kind", "entity_code", "year", name="uq_quota_ledger_entity"),
        CheckConstraint("reserved >= 0 AND consumed >= 0 AND released >= 0", name="nonneg"),
        CheckConstraint("reserved + consumed <= allotted + extra", name="never_over"),
    )

    @property
    def available(self) -> int:
        return self.allotted + self.extra - self.reserved - self.consumed


class Reservation(Base):
    __tablename__ = "quota_reservation"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ledger_id: Mapped[int] = mapped_column(ForeignKey("quota_ledger.id"), index=True)
    status: Mapped[str] = mapped_column(String(10))  # reserved | consumed | released
    reference: Mapped[str] = mapped_column(String(100), default="")
    # outside the quota (a replacement the policy does not charge): moves no counter
    free: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Partnership(Base):
    """Extra certificates a commune buys itself for a year, at the ministry's unit price."""

    __tablename__ = "quota_partnership"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    commune_code: Mapped[str] = mapped_column(ForeignKey("commune.code"), index=True)
    year: Mapped[int] = mapped_column(Integer)
    count: Mapped[int] = mapped_column(Integer)
    unit_price_mad: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    signed_on: Mapped[date] = mapped_column(Date)
    reference: Mapped[str] = mapped_column(String(100), default="")

    __table_args__ = (CheckConstraint("count > 0", name="positive"),)


class ExtraAllotment(Base):
    """Certificates added to an entity's year beyond its tier, paid by someone other than
    the entity (e.g. an election campaign's replacements, billed to the DGCL). The ledger's
    ``extra`` counts them with the partnerships."""

    __tablename__ = "quota_extra_allotment"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    entity_kind: Mapped[str] = mapped_column(String(10))
    entity_code: Mapped[str] = mapped_column(String(12), index=True)
    year: Mapped[int] = mapped_column(Integer)
    count: Mapped[int] = mapped_column(Integer)
    billed_to: Mapped[str] = mapped_column(String(50))
    reference: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        CheckConstraint("count > 0", name="positive"),
        UniqueConstraint("reference", name="uq_quota_extra_allotment_reference"),
    )

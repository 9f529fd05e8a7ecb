"""Quota policies as versioned data.

A policy is a list of population tiers (bounds inclusive) with a yearly certificate count,
the count for each prefecture/province's decentralised Interior services, the census it
reads and the first calendar year it applies to. Nothing about tiers lives in ``if``s.
The policy in force for a year is the one with the latest ``first_year`` not after it
(the highest version on a tie).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.audit import record
from core.clock import Clock
from quotas.errors import InvalidPolicy, NoPolicy
from quotas.models import QuotaPolicy, QuotaTier


@dataclass(frozen=True)
class Tier:
    name: str
    min_population: int
    max_population: int | None  # None: no upper bound
    yearly_count: int

    def contains(self, population: int) -> bool:
        return population >= self.min_population and (
            self.max_population is None or population <= self.max_population)


@dataclass(frozen=True)
class PolicySpec:
    """A policy to be recorded. Tiers must cover every population from 0 upwards,
    without gap or overlap; the constructor refuses anything else."""

    version: int
    census_year: int
    first_year: int
    services_count: int
    tiers: tuple[Tier, ...]
    description: str = ""
    #: a replacement token (lost, stolen, damaged) takes one of the year's quota
    replacement_consumes_quota: bool = True

    def __post_init__(self) -> None:
        if self.version < 1:
            raise InvalidPolicy("a policy version is a positive number")
        if self.services_count < 0 or any(t.yearly_count < 0 for t in self.tiers):
            raise InvalidPolicy("counts cannot be negative")
        ordered = sorted(self.tiers, key=lambda t: t.min_population)
        if not ordered or ordered[0].min_population != 0:
            raise InvalidPolicy("the first tier must start at 0 inhabitants")
        for lower, upper in itertools.pairwise(ordered):
            if lower.max_population is None or upper.min_population != lower.max_population + 1:
                raise InvalidPolicy(
                    f"tiers {lower.name!r} and {upper.name!r} leave a gap or overlap")
        if ordered[-1].max_population is not None:
            raise InvalidPolicy("the last tier must have no upper bound")
        object.__setattr__(self, "tiers", tuple(ordered))

    def tier_for(self, population: int) -> Tier:
        for tier in self.tiers:
            if tier.contains(population):
                return tier
        raise InvalidPolicy(f"no tier for a population of {population}")  # unreachable


# DESIGN.md's table: more than 50,000 -> 5; 20,000 to 50,000 inclusive -> 4; fewer than
# 20,000 -> 3; a province's Interior services -> 3.
DGCL_TIERS = (
    Tier("small", 0, 19_999, 3),
    Tier("medium", 20_000, 50_000, 4),
    Tier("large", 50_001, None, 5),
)
# Version 1 (2020) read the 2014 census; version 2 keeps the table and reads the 2024
# census from 2026, the first full year after its legal populations were published.
DEFAULT_POLICIES = (
    PolicySpec(1, census_year=2014, first_year=2020, services_count=3, tiers=DGCL_TIERS,
               description="DGCL quotas, 2014 census"),
    PolicySpec(2, census_year=2024, first_year=2026, services_count=3, tiers=DGCL_TIERS,
               description="DGCL quotas, 2024 census"),
)


def record_policy(session: Session, clock: Clock, spec: PolicySpec, *,
                  actor: str) -> QuotaPolicy:
    if session.get(QuotaPolicy, spec.version) is not None:
        raise InvalidPolicy(f"policy version {spec.version} exists; versions are immutable",
                            field="version")
    policy = QuotaPolicy(version=spec.version, census_year=spec.census_year,
                         first_year=spec.first_year, services_count=spec.services_count,
                         description=spec.description,
                         replacement_consumes_quota=spec.replacement_consumes_quota,
                         created_at=clock.now())
    session.add(policy)
    for tier in spec.tiers:
        session.add(QuotaTier(policy_version=spec.version, name=tier.name,
                              min_population=tier.min_population,
                              max_population=tier.max_population,
                              yearly_count=tier.yearly_count))
    session.flush()
    record(session, clock, actor=actor, action="quota.policy.created",
           object_type="quota_policy", object_id=spec.version,
           summary={"census_year": spec.census_year, "first_year": spec.first_year,
                    "services_count": spec.services_count,
                    "replacement_consumes_quota": spec.replacement_consumes_quota,
                    "tiers": [[t.name, t.min_population, t.max_population, t.yearly_count]
                              for t in spec.tiers]})
    return policy


def ensure_default_policies(session: Session, clock: Clock, *, actor: str = "system") -> int:
    """Record the built-in policies that are missing; returns how many were added."""
    added = 0
    for spec in DEFAULT_POLICIES:
        if session.get(QuotaPolicy, spec.version) is None:
            record_policy(session, clock, spec, actor=actor)
            added += 1
    return added


def load_spec(session: Session, version: int) -> PolicySpec:
    policy = session.get(QuotaPolicy, version)
    if policy is None:
        raise NoPolicy(f"no quota policy version {version}", version=version)
    tiers = session.scalars(select(QuotaTier).where(QuotaTier.policy_version == version))
    return PolicySpec(policy.version, policy.census_year, policy.first_year,
                      policy.services_count,
                      tuple(Tier(t.name, t.min_population, t.max_population, t.yearly_count)
                            for t in tiers), policy.description,
                      policy.replacement_consumes_quota)


def spec_for_year(session: Session, year: int) -> PolicySpec:
    version = session.scalar(
        select(QuotaPolicy.version).where(QuotaPolicy.first_year <= year)
        .order_by(QuotaPolicy.first_year.desc(), QuotaPolicy.version.desc()).limit(1))
    if version is None:
        raise NoPolicy(f"no quota policy applies to {year}", year=year)
    return load_spec(session, version)


def list_policies(session: Session) -> list[PolicySpec]:
    versions = session.scalars(select(QuotaPolicy.version).order_by(QuotaPolicy.version))
    return [load_spec(session, v) for v in versions]

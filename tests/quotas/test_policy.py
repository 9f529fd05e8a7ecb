"""Tier bounds, policy versions and the census a policy reads."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session

from core.clock import FrozenClock
from quotas import ledger, policy
from quotas.errors import InvalidPolicy, NoPolicy, NotAQuotaEntity, UnknownEntity
from quotas.ledger import Entity
from quotas.policy import DGCL_TIERS, PolicySpec, Tier

SPEC = PolicySpec(9, census_year=2024, first_year=2030, services_count=3, tiers=DGCL_TIERS)


@pytest.mark.parametrize(("population", "count"), [
    (0, 3), (19_999, 3), (20_000, 4), (35_000, 4), (50_000, 4), (50_001, 5), (2_000_000, 5),
])
def test_tier_bounds_exactly_as_written(population: int, count: int) -> None:
    assert SPEC.tier_for(population).yearly_count == count


@pytest.mark.parametrize("tiers", [
    (Tier("a", 1, None, 3),),                                   # does not start at 0
    (Tier("a", 0, 100, 3), Tier("b", 102, None, 4)),            # gap
    (Tier("a", 0, 100, 3), Tier("b", 100, None, 4)),            # overlap
    (Tier("a", 0, 100, 3), Tier("b", 101, 200, 4)),             # bounded top
    (Tier("a", 0, None, -1),),                                  # negative count
])
def test_invalid_tiers_are_refused(tiers: tuple[Tier, ...]) -> None:
    with pytest.raises(InvalidPolicy):
        PolicySpec(5, census_year=2024, first_year=2030, services_count=3, tiers=tiers)


def test_policy_in_force_follows_first_year(session: Session) -> None:
    assert policy.spec_for_year(session, 2021).version == 1
    assert policy.spec_for_year(session, 2021).census_year == 2014
    assert policy.spec_for_year(session, 2026).version == 2
    assert policy.spec_for_year(session, 2026).census_year == 2024
    with pytest.raises(NoPolicy):
        policy.spec_for_year(session, 2019)


def test_census_choice_changes_the_tier(session: Session) -> None:
    # Al Hoceima: 56,716 in 2014 (large), 50,225 in 2024 (large); Bni Bouayach 18,271 -> 20,013.
    bni_bouayach = Entity.parse("01.051.01.03")
    assert ledger.allotment(session, bni_bouayach, 2024).allotted == 3  # policy v1, 2014
    assert ledger.allotment(session, bni_bouayach, 2026).allotted == 4  # policy v2, 2024


def test_new_policy_version_applies_from_its_first_year(session: Session,
                                                        clock: FrozenClock) -> None:
    generous = PolicySpec(3, census_year=2024, first_year=2028, services_count=4,
                          tiers=(Tier("all", 0, None, 6),), description="test")
    policy.record_policy(session, clock, generous, actor="dgcl")
    assert ledger.allotment(session, Entity.parse("01.051.01.03"), 2028).allotted == 6
    assert ledger.allotment(session, Entity.parse("01.051"), 2028).allotted == 4
    assert ledger.allotment(session, Entity.parse("01.051.01.03"), 2027).allotted == 4
    with pytest.raises(InvalidPolicy):
        policy.record_policy(session, clock, generous, actor="dgcl")  # versions are immutable


def test_commune_without_census_figure_falls_back(session: Session) -> None:
    lagouira = ledger.allotment(session, Entity.parse("12.066.01.03"), 2024)  # reads 2014
    assert lagouira.census_year == 2024
    assert lagouira.allotted == 3


def test_arrondissements_and_unknown_codes(session: Session) -> None:
    with pytest.raises(NotAQuotaEntity):
        ledger.allotment(session, Entity.parse("01.511.01.03"), 2026)
    with pytest.raises(UnknownEntity):
        ledger.allotment(session, Entity.parse("99.999.99.99"), 2026)
    with pytest.raises(UnknownEntity):
        Entity.parse("Al Hoceima")


def test_national_report_2024_census(session: Session) -> None:
    report = ledger.report(session, 2026)
    assert report.tier_counts == {"large": 104, "medium": 205, "small": 1194}
    communes = [x for x in report.lines if x.entity.startswith("commune:")]
    services = [x for x in report.lines if x.entity.startswith("services:")]
    assert len(communes) == 1503
    assert sum(x.allotted for x in communes) == 4922
    assert sum(x.allotted for x in services) == 225
    assert report.totals["allotted"] == 5147


def test_regional_and_provincial_reports(session: Session) -> None:
    region = ledger.report(session, 2026, region_code="12")
    assert {x.region_code for x in region.lines} == {"12"}
    province = ledger.report(session, 2026, province_code="01.051")
    assert {x.province_code for x in province.lines} == {"01.051"}
    assert province.lines[-1].entity == "services:01.051"
    with pytest.raises(UnknownEntity):
        ledger.report(session, 2026, region_code="77")

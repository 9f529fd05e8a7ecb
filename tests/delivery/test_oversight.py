"""The dashboards' figures (delivery.oversight, quotas.oversight) on a small scene after an
election: who can sign, who lost it and since when, what waits, what travels, lead times,
quota use; both databases."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.clock import FrozenClock
from delivery import oversight
from delivery.errors import HolderNotFound
from delivery.models import APPROVED, DELIVERED, SHIPPED, SUBMITTED
from quotas import ledger
from quotas.errors import UnknownEntity
from quotas.models import Commune, Province
from quotas.oversight import quota_by_area, total_of
from tests.delivery import oversight_scene
from tests.delivery.oversight_scene import (
    COMMUNE_A,
    COMMUNE_B,
    COMMUNE_C,
    COMMUNE_D,
    HERE,
    THERE,
    YEAR,
)


def _communes(session: Session, *, region: str | None = None,
              province: str | None = None) -> int:
    query = select(func.count(Commune.code)).join(
        Province, Province.code == Commune.province_code).where(
        Commune.kind != "arrondissement")
    if region:
        query = query.where(Province.region_code == region)
    if province:
        query = query.where(Commune.province_code == province)
    return int(session.scalar(query) or 0)


@pytest.fixture
def scene(session: Session, clock: FrozenClock) -> oversight_scene.Scene:
    return oversight_scene.build(session, clock)


def test_blockages_longest_first_then_never(session: Session, clock: FrozenClock,
                                            scene: oversight_scene.Scene) -> None:
    found = oversight.blockages(session, clock, region_code="01")
    assert len(found) == _communes(session, region="01") - 1  # only A can sign
    assert [(b.commune_code, b.days) for b in found[:2]] == [(COMMUNE_B, 20), (COMMUNE_C, 5)]
    assert found[0].since == scene.t - timedelta(days=20)
    assert all(b.never for b in found[2:])
    assert COMMUNE_A not in {b.commune_code for b in found}
    assert found[2].commune_code < found[3].commune_code
    in_province = oversight.blockages(session, clock, province_code=THERE)
    assert in_province[0].commune_code == COMMUNE_C
    assert in_province[0].province_name_ar


def test_national_regional_and_provincial_rows(session: Session, clock: FrozenClock,
                                               scene: oversight_scene.Scene) -> None:
    national = oversight.areas(session, clock, year=YEAR, overdue_days=7)
    assert len(national) == 12
    north = next(f for f in national if f.area.code == "01")
    assert (north.communes, north.communes_able) == (_communes(session, region="01"), 1)
    assert (north.lost, north.longest_days) == (2, 20)
    assert north.never == north.communes - 3
    assert north.waiting == {SUBMITTED: 1, APPROVED: 1, SHIPPED: 1, DELIVERED: 1}
    assert (north.batches_in_transit, north.tokens_in_transit) == (1, 1)
    assert north.overdue_handovers == 1
    assert north.median_lead_days == 10.0  # 10, 10 and 20 days
    others = [f for f in national if f.area.code != "01"]
    assert all(f.communes_able == 0 and f.waiting_total == 0 for f in others)
    assert oversight.rank(national)[0].area.code == "01"
    country = oversight.total(national, oversight.Area("country", "MA", "Maroc", "المغرب"))
    assert country.communes == _communes(session) == 1503
    assert country.communes_able == 1

    provinces = {f.area.code: f for f in oversight.areas(session, clock, year=YEAR,
                                                          overdue_days=7,
                                                          region_code="01")}
    assert (provinces[HERE].communes_able, provinces[HERE].lost,
            provinces[HERE].longest_days) == (1, 1, 20)
    assert (provinces[THERE].lost, provinces[THERE].longest_days) == (1, 5)
    assert provinces[THERE].median_lead_days == 20.0
    assert provinces[HERE].batches_in_transit == 1
    alone = oversight.province_figures(session, clock, HERE, year=YEAR, overdue_days=7)
    assert alone == provinces[HERE]
    with pytest.raises(UnknownEntity):
        oversight.province_figures(session, clock, "99.999", year=YEAR, overdue_days=7)
    ranked = oversight.rank(provinces.values())
    assert ranked[0].area.code == HERE  # the only province where a commune can sign

    communes = {f.area.code: f for f in oversight.areas(session, clock, year=YEAR,
                                                         overdue_days=7,
                                                         province_code=HERE)}
    assert len(communes) == _communes(session, province=HERE)
    assert communes[COMMUNE_A].communes_able == 1
    assert communes[COMMUNE_A].waiting == {SHIPPED: 1}
    assert (communes[COMMUNE_B].lost, communes[COMMUNE_B].waiting) == (
        1, {SUBMITTED: 1, DELIVERED: 1})
    assert communes[COMMUNE_B].overdue_handovers == 1
    assert communes[COMMUNE_D].waiting == {APPROVED: 1}

    # with 30 more days the overdue delay and the blockage grow; nothing else moves
    clock.advance(timedelta(days=30))
    later = oversight.areas(session, clock, year=YEAR, overdue_days=45, region_code="01")
    assert {f.area.code: f.longest_days for f in later}[HERE] == 50
    assert sum(f.overdue_handovers for f in later) == 0


def test_quota_by_area_adds_up_the_ledger(session: Session, clock: FrozenClock,
                                          scene: oversight_scene.Scene) -> None:
    regions = quota_by_area(session, YEAR)
    country = total_of(regions)
    assert country.total == ledger.report(session, YEAR).totals["allotted"] \
        + ledger.report(session, YEAR).totals["extra"]
    north = regions["01"]
    assert (north.reserved, north.consumed) == (4, 3)
    assert north.available == north.total - 7
    assert 0 < north.used_share < 1
    provinces = quota_by_area(session, YEAR, region_code="01")
    assert (provinces[HERE].reserved, provinces[HERE].consumed) == (4, 2)
    assert sum(p.total for p in provinces.values()) == north.total
    entities = quota_by_area(session, YEAR, province_code=HERE)
    assert (entities[COMMUNE_B].total, entities[COMMUNE_B].used) == (4, 3)
    assert f"services:{HERE}" in entities
    areas = oversight.areas(session, clock, year=YEAR, overdue_days=7, region_code="01")
    assert {f.area.code: f.quota for f in areas}[HERE] == provinces[HERE]
    with pytest.raises(UnknownEntity):
        quota_by_area(session, YEAR, region_code="99")
    with pytest.raises(UnknownEntity):
        oversight.areas(session, clock, year=YEAR, overdue_days=7, province_code="99.999")


def test_lists_for_the_pages(session: Session, clock: FrozenClock,
                             scene: oversight_scene.Scene) -> None:
    queue = oversight.operator_queue(session, clock)
    assert [r.id for r in queue[SUBMITTED]] == [scene.request_b_new]
    assert queue[SUBMITTED][0].idle_days == 3
    assert queue[SUBMITTED][0].commune_name_ar
    assert [r.id for r in queue[APPROVED]] == [scene.request_d]
    assert queue["personalised"] == []

    open_here = oversight.province_requests(session, clock, HERE, open_only=True)
    assert [r.id for r in open_here] == [scene.request_overdue, scene.request_d,
                                         scene.request_b_new, scene.request_in_transit]
    assert {r.province_code for r in oversight.province_requests(session, clock, HERE)} \
        == {HERE}
    assert len(oversight.province_requests(session, clock, HERE)) == 6

    holders = {h.id: h for h in oversight.province_holders(session, clock, HERE)}
    assert holders[scene.holder_a.id].certificate == oversight.CERT_VALID
    assert holders[scene.holder_b_old.id].certificate == oversight.CERT_REVOKED
    assert holders[scene.holder_b_new.id].request_status == SUBMITTED
    assert scene.holder_c.id not in holders

    lines = oversight.province_batches(session, clock, HERE, overdue_days=7)
    assert [(b.id, b.status, b.tokens, b.overdue, b.days_in_transit) for b in lines] == [
        (scene.batch_in_transit, "dispatched", 1, 0, 2),
        (scene.batch_received, "received", 1, 1, None)]
    assert lines[0].tracking_number == "EE876543216MA"

    creds = oversight.holder_credentials(session, clock, scene.holder_c.id,
                                         terms_version="2026-01")
    assert [(c.status, c.certificate, c.days_left) for c in creds] == [
        ("active", oversight.CERT_EXPIRED, -5)]
    assert creds[0].may_accept_terms
    with pytest.raises(HolderNotFound):
        oversight.holder_credentials(session, clock, 10**9, terms_version="2026-01")


def test_certificate_state(clock: FrozenClock) -> None:
    now = clock.now()
    later, earlier = now + timedelta(days=1), now - timedelta(days=1)
    assert oversight.certificate_state("issued", later, now) == oversight.CERT_VALID
    assert oversight.certificate_state(None, later, now) == oversight.CERT_VALID
    assert oversight.certificate_state("issued", earlier, now) == oversight.CERT_EXPIRED
    assert oversight.certificate_state("suspended", later, now) == oversight.CERT_SUSPENDED
    assert oversight.certificate_state("revoked", earlier, now) == oversight.CERT_REVOKED
    assert oversight.certificate_state("abandoned", later, now) == oversight.CERT_REVOKED

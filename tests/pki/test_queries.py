"""Reading the registry: counts, windows and per-status figures agree with the list itself."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session

from core.errors import InvalidInput
from pki import lifecycle, queries
from pki.authority import Authority
from tests.pki.conftest import ACTOR, World

FILTERS = [{}, {"profile": "holder"}, {"status": "revoked"}, {"status": "suspended"},
           {"profile": "ocsp", "status": "issued"}, {"cin": " k12345 "},
           {"cin": "ZZ000000"}]


@pytest.mark.parametrize("filters", FILTERS, ids=lambda f: ",".join(f) or "none")
def test_count_matches_the_list(world: World, pki_session: Session,
                                filters: dict[str, str]) -> None:
    everything = lifecycle.list_certificates(pki_session, limit=1_000_000, **filters)
    assert queries.count_certificates(pki_session, **filters) == len(everything)
    seen = []
    for offset in range(0, len(everything) + 2, 2):
        page = queries.certificate_page(pki_session, limit=2, offset=offset, **filters)
        assert page.total == len(everything)
        seen.extend(c.serial for c in page.items)
    assert seen == [c.serial for c in everything]  # newest first, each once


def test_page_of_one_holder(world: World, pki_session: Session) -> None:
    page = queries.certificate_page(pki_session, cin="K12345")
    assert [c.serial for c in page.items] == [world.serials["revoked"]] and page.total == 1
    with pytest.raises(InvalidInput):
        queries.certificate_page(pki_session, limit=0)
    with pytest.raises(InvalidInput):
        queries.certificate_page(pki_session, offset=-1)


def test_counts_by_profile_and_status(world: World, pki_session: Session,
                                      authority: Authority) -> None:
    before = queries.counts_by_profile_and_status(pki_session)
    assert sum(before.values()) == queries.count_certificates(pki_session)
    for (profile, status), count in before.items():
        assert queries.count_certificates(pki_session, profile=profile,
                                          status=status) == count
    assert before[("holder", "revoked")] >= 1 and before[("tsa", "issued")] >= 1
    lifecycle.revoke(pki_session, world.clock, authority, world.serials["good"],
                     "keyCompromise", actor=ACTOR)
    after = queries.counts_by_profile_and_status(pki_session)
    assert after[("holder", "revoked")] == before[("holder", "revoked")] + 1
    assert after.get(("holder", "issued"), 0) == before[("holder", "issued")] - 1


def test_authorities(world: World, pki_session: Session) -> None:
    found = queries.authorities(pki_session)
    assert [a.kind for a in found][:2] == ["root", "issuing"]
    assert found[0].id == world.init.root_id and found[1].id == world.init.issuing_id

"""Reading the territory one page at a time: filters in SQL, stable order, exact totals."""

from __future__ import annotations

from sqlalchemy.orm import Session

from quotas import queries


def test_regions_and_provinces(session: Session) -> None:
    regions = queries.regions(session)
    assert regions.total == 12 and regions.items[0].code == "01"
    page = queries.regions(session, limit=5, offset=10)
    assert [r.code for r in page.items] == ["11", "12"] and page.total == 12
    north = queries.provinces(session, region_code="01")
    assert {p.region_code for p in north.items} == {"01"}
    assert "01.051" in [p.code for p in north.items]
    codes = [p.code for p in north.items]
    assert codes == sorted(codes)
    window = queries.provinces(session, region_code="01", limit=2, offset=1)
    assert [p.code for p in window.items] == codes[1:3] and window.total == north.total
    assert queries.provinces(session, region_code="99").total == 0


def test_communes_filters(session: Session) -> None:
    assert queries.communes(session, kind="arrondissement", limit=1).total == 41
    hoceima = queries.communes(session, province_code="01.051", limit=None)
    assert {row.commune.province_code for row in hoceima.items} == {"01.051"}
    assert {row.region_code for row in hoceima.items} == {"01"}
    first = hoceima.items[0]
    assert first.commune.code == "01.051.01.01" and set(first.populations) >= {2014, 2024}
    rural = queries.communes(session, province_code="01.051", kind="rurale", limit=None)
    assert 0 < rural.total < hoceima.total
    assert {row.commune.kind for row in rural.items} == {"rurale"}
    by_name = queries.communes(session, name="IMZOU")  # French name, any case
    assert [row.commune.code for row in by_name.items] == ["01.051.01.05"]
    by_arabic = queries.communes(session, name="الحسيمة", province_code="01.051")
    assert "01.051.01.01" in [row.commune.code for row in by_arabic.items]
    assert queries.communes(session, region_code="01", province_code="02.081").total == 0


def test_name_wildcards_are_literal(session: Session) -> None:
    assert queries.communes(session, name="%").total == 0
    assert queries.communes(session, name="_").total == 0
    assert queries.communes(session, name="M'diq").total >= 1  # a quote is just a quote


def test_windows_of_communes(session: Session) -> None:
    everything = queries.communes(session, province_code="01.151", limit=None)
    pages = [queries.communes(session, province_code="01.151", limit=7, offset=offset)
             for offset in range(0, everything.total, 7)]
    assert {p.total for p in pages} == {everything.total}
    assert [row.commune.code for p in pages for row in p.items] == \
        [row.commune.code for row in everything.items]
    assert all(row.populations for p in pages for row in p.items)


def test_one_commune(session: Session) -> None:
    found = queries.commune(session, "01.051.01.05")
    assert found is not None
    assert (found.commune.name_fr, found.region_code) == ("Imzouren", "01")
    assert found.populations[2024] > 20_000
    assert queries.commune(session, "99.999.99.99") is None
    assert queries.province_of_commune(session, "01.151.01.01") == "01.151"
    assert queries.province_of_commune(session, "99.999.99.99") is None

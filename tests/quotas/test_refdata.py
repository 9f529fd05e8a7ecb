"""Loading the territory: counts, idempotence, and a later census leaving history alone."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.clock import FrozenClock
from core.errors import InvalidInput
from quotas import ledger, refdata
from quotas.ledger import Entity
from quotas.models import CensusPopulation, Commune


def test_bundled_data_counts(session: Session) -> None:
    kinds = {kind: count for kind, count in session.execute(
        select(Commune.kind, func.count()).group_by(Commune.kind))}
    assert kinds == {"urbaine": 221, "rurale": 1282, "arrondissement": 41}
    communes = select(Commune.code).where(Commune.kind != "arrondissement")
    total_2024 = session.scalar(select(func.sum(CensusPopulation.population)).where(
        CensusPopulation.census_year == 2024, CensusPopulation.commune_code.in_(communes)))
    total_2014 = session.scalar(select(func.sum(CensusPopulation.population)).where(
        CensusPopulation.census_year == 2014, CensusPopulation.commune_code.in_(communes)))
    assert (total_2024, total_2014) == (36_828_330, 33_848_242)
    assert session.get(Commune, "01.051.01.01").name_ar == "الحسيمة"


def test_reload_is_idempotent(session: Session, clock: FrozenClock) -> None:
    report = refdata.load(session, clock)
    assert (report.created, report.updated) == (0, 0)
    assert (report.regions, report.provinces, report.communes) == (12, 75, 1503)


def test_new_census_updates_figures_not_ledger(session: Session, clock: FrozenClock,
                                              tmp_path: Path) -> None:
    commune = Entity.parse("01.051.01.03")  # Bni Bouayach: 20,013 in 2024 -> 4 a year
    ledger.reserve(session, clock, commune, 2026, actor="c")
    rows = refdata.read_rows(refdata.bundled_csv())
    for row in rows:
        if row["commune_code"] == commune.code and row["census_year"] == "2024":
            row["population"] = "60000"  # a corrected figure pushing it to the top tier
    newer = tmp_path / "corrected.csv"
    with newer.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=refdata.COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    report = refdata.load(session, clock, newer)
    assert report.updated == 1
    assert ledger.check(session, commune, 2026).allotted == 4  # the year under way keeps it
    assert ledger.check(session, commune, 2027).allotted == 5  # a new year reads the figure


def test_malformed_file_is_refused(session: Session, clock: FrozenClock,
                                   tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("region_code,foo\n01,x\n", encoding="utf-8")
    with pytest.raises(InvalidInput, match="missing columns"):
        refdata.load(session, clock, bad)

"""Loading the territory and its census figures.

The CSV (HCP, RGPH 2014 and 2024) has one row per unit and census year. Loading is an
upsert: running it twice changes nothing, and a file with a newer census adds or updates
population figures without touching the quota ledger, whose rows keep the snapshot they
were allotted with.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.audit import record
from core.clock import Clock
from core.errors import InvalidInput
from quotas.models import COMMUNE_KINDS, CensusPopulation, Commune, Province, Region

COLUMNS = ("region_code", "region_name_fr", "region_name_ar", "province_code",
           "province_name_fr", "province_name_ar", "commune_code", "commune_name_fr",
           "commune_name_ar", "commune_kind", "population", "census_year")


def bundled_csv() -> Path:
    return Path(str(resources.files("quotas") / "data" / "morocco_communes.csv"))


@dataclass(frozen=True)
class LoadReport:
    regions: int
    provinces: int
    communes: int
    arrondissements: int
    populations: int
    created: int
    updated: int

    def lines(self) -> list[str]:
        return [f"regions: {self.regions}", f"provinces: {self.provinces}",
                f"communes: {self.communes}", f"arrondissements: {self.arrondissements}",
                f"census figures: {self.populations}",
                f"rows created: {self.created}, updated: {self.updated}"]


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        missing = set(COLUMNS) - set(reader.fieldnames or ())
        if missing:
            raise InvalidInput(f"{path.name}: missing columns {sorted(missing)}")
        rows = list(reader)
    for number, row in enumerate(rows, start=2):
        if row["commune_kind"] not in COMMUNE_KINDS:
            raise InvalidInput(f"{path.name}:{number}: unknown kind {row['commune_kind']!r}")
        # An empty population means the commune did not exist at that census.
        if not row["census_year"].isdigit() or not (row["population"] == ""
                                                    or row["population"].isdigit()):
            raise InvalidInput(f"{path.name}:{number}: population and year must be numbers")
    return rows


def load(session: Session, clock: Clock, path: Path | None = None, *,
         actor: str = "system") -> LoadReport:
    rows = read_rows(path or bundled_csv())
    created = updated = 0

    def upsert(model: type[Any], key: Any, values: dict[str, Any],
               existing: dict[Any, Any]) -> None:
        nonlocal created, updated
        current = existing.get(key)
        if current is None:
            obj = model(**values)
            session.add(obj)
            existing[key] = obj
            created += 1
        elif any(getattr(current, k) != v for k, v in values.items()):
            for k, v in values.items():
                setattr(current, k, v)
            updated += 1

    regions = {r.code: r for r in session.scalars(select(Region))}
    provinces = {p.code: p for p in session.scalars(select(Province))}
    communes = {c.code: c for c in session.scalars(select(Commune))}
    populations = {(p.commune_code, p.census_year): p
                   for p in session.scalars(select(CensusPopulation))}
    for row in rows:
        upsert(Region, row["region_code"], {"code": row["region_code"],
               "name_fr": row["region_name_fr"], "name_ar": row["region_name_ar"]}, regions)
    session.flush()
    for row in rows:
        upsert(Province, row["province_code"], {"code": row["province_code"],
               "region_code": row["region_code"], "name_fr": row["province_name_fr"],
               "name_ar": row["province_name_ar"]}, provinces)
    session.flush()
    for row in rows:
        upsert(Commune, row["commune_code"], {"code": row["commune_code"],
               "province_code": row["province_code"], "name_fr": row["commune_name_fr"],
               "name_ar": row["commune_name_ar"], "kind": row["commune_kind"]}, communes)
    session.flush()
    for row in rows:
        if row["population"] == "":
            continue
        key = (row["commune_code"], int(row["census_year"]))
        upsert(CensusPopulation, key, {"commune_code": key[0], "census_year": key[1],
               "population": int(row["population"])}, populations)
    session.flush()
    report = LoadReport(
        regions=len(regions), provinces=len(provinces),
        communes=sum(1 for c in communes.values() if c.kind != "arrondissement"),
        arrondissements=sum(1 for c in communes.values() if c.kind == "arrondissement"),
        populations=len(populations), created=created, updated=updated)
    if created or updated:
        record(session, clock, actor=actor, action="refdata.loaded", object_type="refdata",
               object_id="territory", summary={"created": created, "updated": updated})
    return report


def census_years(session: Session) -> list[int]:
    return list(session.scalars(
        select(CensusPopulation.census_year).distinct().order_by(CensusPopulation.census_year)))


def provinces_in(session: Session, region_code: str | None) -> Iterable[Province]:
    query = select(Province).order_by(Province.code)
    if region_code:
        query = query.where(Province.region_code == region_code)
    return session.scalars(query)

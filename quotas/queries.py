"""Reading the territory: regions, provinces, communes and their census figures.

Read-only, one page at a time (:mod:`core.listing`): filters in SQL, a stable order by
code. The reference data itself is loaded by :mod:`quotas.refdata`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Select, func, or_, select
from sqlalchemy.orm import Session

from core.listing import LIKE_ESCAPE, Page, escape_like, rows_page, scalars_page
from quotas.models import CensusPopulation, Commune, Province, Region


@dataclass(frozen=True)
class CommuneRow:
    """A commune (or arrondissement) with its region and its population per census year."""

    commune: Commune
    region_code: str
    populations: dict[int, int] = field(default_factory=dict)


def regions(session: Session, *, limit: int | None = None, offset: int = 0) -> Page[Region]:
    return scalars_page(session, select(Region).order_by(Region.code), limit=limit,
                        offset=offset)


def provinces(session: Session, *, region_code: str | None = None, limit: int | None = None,
              offset: int = 0) -> Page[Province]:
    """Prefectures and provinces, of one region if ``region_code`` is given."""
    query = select(Province).order_by(Province.code)
    if region_code:
        query = query.where(Province.region_code == region_code)
    return scalars_page(session, query, limit=limit, offset=offset)


def _communes_with_region() -> Select:
    return (select(Commune, Province.region_code)
            .join(Province, Province.code == Commune.province_code))


def _populations(session: Session, codes: list[str]) -> dict[str, dict[int, int]]:
    found: dict[str, dict[int, int]] = {}
    if codes:
        for code, year, population in session.execute(
                select(CensusPopulation.commune_code, CensusPopulation.census_year,
                       CensusPopulation.population)
                .where(CensusPopulation.commune_code.in_(codes))):
            found.setdefault(code, {})[year] = population
    return found


def communes(session: Session, *, region_code: str | None = None,
             province_code: str | None = None, kind: str | None = None,
             name: str | None = None, limit: int | None = None, offset: int = 0
             ) -> Page[CommuneRow]:
    """Communes and arrondissements matching every filter given; ``name`` is part of the
    French name (any case) or of the Arabic name."""
    query = _communes_with_region().order_by(Commune.code)
    if region_code:
        query = query.where(Province.region_code == region_code)
    if province_code:
        query = query.where(Commune.province_code == province_code)
    if kind:
        query = query.where(Commune.kind == kind)
    if name:
        query = query.where(or_(
            func.lower(Commune.name_fr).like(f"%{escape_like(name.lower())}%",
                                             escape=LIKE_ESCAPE),
            Commune.name_ar.like(f"%{escape_like(name)}%", escape=LIKE_ESCAPE)))
    page = rows_page(session, query, limit=limit, offset=offset)
    populations = _populations(session, [c.code for c, _ in page.items])
    return page.map(lambda row: CommuneRow(row[0], row[1], populations.get(row[0].code, {})))


def commune(session: Session, code: str) -> CommuneRow | None:
    """One commune with its region and census figures; None if the code is unknown."""
    found = session.execute(_communes_with_region().where(Commune.code == code)).first()
    if found is None:
        return None
    return CommuneRow(found[0], found[1], _populations(session, [code]).get(code, {}))


def province_of_commune(session: Session, commune_code: str) -> str | None:
    """The province of a commune; None if the code is unknown."""
    return session.scalar(select(Commune.province_code).where(Commune.code == commune_code))

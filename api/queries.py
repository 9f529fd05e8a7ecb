"""Read models for lists that no domain service offers yet: the territory and the audit
log, filtered and paginated. Read-only; every write goes through a domain service.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from core.audit import AuditEvent
from quotas.models import CensusPopulation, Commune, Province, Region

T = TypeVar("T")


def _page(session: Session, query: Any, limit: int, offset: int
          ) -> tuple[list[Any], int]:
    total = session.scalar(select(func.count()).select_from(query.order_by(None).subquery()))
    rows = list(session.execute(query.limit(limit).offset(offset)).all())
    return rows, int(total or 0)


def regions(session: Session, *, limit: int, offset: int) -> tuple[list[Region], int]:
    rows, total = _page(session, select(Region).order_by(Region.code), limit, offset)
    return [r[0] for r in rows], total


def provinces(session: Session, *, region_code: str | None, province_code: str | None,
              limit: int, offset: int) -> tuple[list[Province], int]:
    query = select(Province).order_by(Province.code)
    if region_code:
        query = query.where(Province.region_code == region_code)
    if province_code:
        query = query.where(Province.code == province_code)
    rows, total = _page(session, query, limit, offset)
    return [r[0] for r in rows], total


@dataclass(frozen=True)
class CommuneRow:
    commune: Commune
    region_code: str
    populations: dict[int, int]


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def communes(session: Session, *, region_code: str | None, province_code: str | None,
             kind: str | None, name: str | None, limit: int, offset: int
             ) -> tuple[list[CommuneRow], int]:
    query = (select(Commune, Province.region_code)
             .join(Province, Province.code == Commune.province_code).order_by(Commune.code))
    if region_code:
        query = query.where(Province.region_code == region_code)
    if province_code:
        query = query.where(Commune.province_code == province_code)
    if kind:
        query = query.where(Commune.kind == kind)
    if name:
        pattern = f"%{_escape_like(name.lower())}%"
        query = query.where(or_(func.lower(Commune.name_fr).like(pattern, escape="\\"),
                                Commune.name_ar.like(f"%{_escape_like(name)}%",
                                                     escape="\\")))
    rows, total = _page(session, query, limit, offset)
    codes = [r[0].code for r in rows]
    populations: dict[str, dict[int, int]] = {}
    if codes:
        for code, year, population in session.execute(
                select(CensusPopulation.commune_code, CensusPopulation.census_year,
                       CensusPopulation.population)
                .where(CensusPopulation.commune_code.in_(codes))):
            populations.setdefault(code, {})[year] = population
    return [CommuneRow(c, region, populations.get(c.code, {})) for c, region in rows], total


def commune(session: Session, code: str) -> CommuneRow | None:
    found = session.execute(select(Commune, Province.region_code)
                            .join(Province, Province.code == Commune.province_code)
                            .where(Commune.code == code)).first()
    if found is None:
        return None
    figures = {y: p for y, p in session.execute(
        select(CensusPopulation.census_year, CensusPopulation.population)
        .where(CensusPopulation.commune_code == code))}
    return CommuneRow(found[0], found[1], figures)


def audit_events(session: Session, *, action: str | None, object_type: str | None,
                 object_id: str | None, actor: str | None, since: datetime | None,
                 until: datetime | None, after_seq: int | None, limit: int, offset: int
                 ) -> tuple[list[AuditEvent], int]:
    query = select(AuditEvent).order_by(AuditEvent.seq)
    if action:
        if action.endswith(".*"):
            prefix = _escape_like(action[:-1])
            query = query.where(AuditEvent.action.like(f"{prefix}%", escape="\\"))
        else:
            query = query.where(AuditEvent.action == action)
    if object_type:
        query = query.where(AuditEvent.object_type == object_type)
    if object_id:
        query = query.where(AuditEvent.object_id == object_id)
    if actor:
        query = query.where(AuditEvent.actor == actor)
    if since:
        query = query.where(AuditEvent.at >= since)
    if until:
        query = query.where(AuditEvent.at < until)
    if after_seq is not None:
        query = query.where(AuditEvent.seq > after_seq)
    rows, total = _page(session, query, limit, offset)
    return [r[0] for r in rows], total

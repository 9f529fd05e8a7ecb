"""Quota use added up by area, for the oversight dashboards (DESIGN §3.6).

Built on :func:`quotas.ledger.report` (one line per quota entity, with what the policy in
force would allot an entity whose ledger row does not exist yet), then summed per region,
per province of a region, or per entity of a province. Arrondissements are never counted
(the report leaves them out). Read-only.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from quotas.ledger import ReportLine, report

LEVELS = ("region", "province", "entity")


@dataclass(frozen=True)
class QuotaFigures:
    """One area's certificates for a year: allotted (policy, plus partnership extras),
    reserved by requests under way, consumed by active credentials, still available."""

    code: str
    allotted: int = 0
    extra: int = 0
    reserved: int = 0
    consumed: int = 0
    available: int = 0

    @property
    def total(self) -> int:
        return self.allotted + self.extra

    @property
    def used(self) -> int:
        return self.reserved + self.consumed

    @property
    def used_share(self) -> float:
        """Reserved and consumed, as a share of the total (0 when nothing is allotted)."""
        return self.used / self.total if self.total else 0.0

    def plus(self, line: ReportLine) -> QuotaFigures:
        return QuotaFigures(self.code, self.allotted + line.allotted, self.extra + line.extra,
                            self.reserved + line.reserved, self.consumed + line.consumed,
                            self.available + line.available)


def _key(line: ReportLine, level: str) -> str:
    if level == "region":
        return line.region_code
    if level == "province":
        return line.province_code
    return line.entity.partition(":")[2] if line.entity.startswith("commune:") \
        else line.entity


def quota_by_area(session: Session, year: int, *, region_code: str | None = None,
                  province_code: str | None = None) -> dict[str, QuotaFigures]:
    """Quota figures for ``year``: per region (no filter), per province of ``region_code``,
    or per entity of ``province_code`` (a commune by its code, the provincial services as
    ``services:<province>``). Raises ``UnknownEntity`` for an unknown region or province."""
    level = "entity" if province_code else "province" if region_code else "region"
    found: dict[str, QuotaFigures] = {}
    for line in report(session, year, region_code=region_code,
                       province_code=province_code).lines:
        key = _key(line, level)
        found[key] = found.get(key, QuotaFigures(key)).plus(line)
    return found


def total_of(figures: dict[str, QuotaFigures], code: str = "MA") -> QuotaFigures:
    """The sum of several areas' figures (the country's, from its regions')."""
    total = QuotaFigures(code)
    for one in figures.values():
        total = QuotaFigures(code, total.allotted + one.allotted, total.extra + one.extra,
                             total.reserved + one.reserved, total.consumed + one.consumed,
                             total.available + one.available)
    return total

"""``tawqi refdata`` and ``tawqi quotas``: the territory and yearly quotas."""

from __future__ import annotations

import csv
import sys
from dataclasses import asdict
from datetime import date
from decimal import Decimal, InvalidOperation
from pathlib import Path

import click

from api.cli.common import pass_runtime, print_json, print_table
from api.runtime import Runtime
from core.errors import InvalidInput
from quotas import ledger, policy, refdata

ACTOR = "cli"


def _year(runtime: Runtime, year: int | None) -> int:
    return year if year is not None else runtime.clock.now().year


@click.group("refdata")
def refdata_group() -> None:
    """Regions, provinces, communes and census figures."""


@refdata_group.command("load")
@click.option("--file", "path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A CSV in the bundled format (default: the bundled HCP data).")
@pass_runtime
def load(runtime: Runtime, path: Path | None) -> None:
    """Load or update the reference data (idempotent) and the built-in quota policies."""
    with runtime.unit_of_work() as session:
        report = refdata.load(session, runtime.clock, path, actor=ACTOR)
        added = policy.ensure_default_policies(session, runtime.clock, actor=ACTOR)
    for line in report.lines():
        click.echo(line)
    click.echo(f"quota policies added: {added}")


@click.group("quotas")
def quotas_group() -> None:
    """Yearly certificate quotas."""


@quotas_group.command("show")
@click.argument("entity")
@click.option("--year", type=int, help="Calendar year (default: this year).")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@pass_runtime
def show(runtime: Runtime, entity: str, year: int | None, fmt: str) -> None:
    """A commune's (01.051.01.01) or a province's services' (01.051) quota for a year."""
    year = _year(runtime, year)
    with runtime.unit_of_work() as session:
        target = ledger.Entity.parse(entity)
        allot = ledger.allotment(session, target, year)
        decision = ledger.check(session, target, year)
    data = {"entity": str(target), "name_fr": allot.name_fr, "name_ar": allot.name_ar,
            "year": year, "policy_version": allot.policy_version, "tier": decision.tier,
            "population": allot.population, "census_year": allot.census_year,
            "allotted": decision.allotted, "extra": decision.extra,
            "reserved": decision.reserved, "consumed": decision.consumed,
            "released": decision.released, "available": decision.remaining,
            "resets_on": decision.resets_on.isoformat()}
    if fmt == "json":
        print_json(data)
        return
    print_table(["field", "value"], list(data.items()))


@quotas_group.command("report")
@click.option("--region", help="Region code, e.g. 01.")
@click.option("--province", help="Prefecture/province code, e.g. 01.051.")
@click.option("--year", type=int, help="Calendar year (default: this year).")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table")
@pass_runtime
def report_command(runtime: Runtime, region: str | None, province: str | None,
                   year: int | None, fmt: str) -> None:
    """Quota use per entity, with totals and the count of communes in each tier."""
    year = _year(runtime, year)
    with runtime.unit_of_work() as session:
        result = ledger.report(session, year, region_code=region, province_code=province)
    if fmt == "json":
        print_json({"year": year, "policy_version": result.policy_version,
                    "census_year": result.census_year, "tier_counts": result.tier_counts,
                    "totals": result.totals, "entities": [asdict(x) for x in result.lines]})
        return
    columns = ["entity", "name_fr", "tier", "population", "allotted", "extra", "reserved",
               "consumed", "available"]
    if fmt == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(columns)
        for line in result.lines:
            writer.writerow([getattr(line, c) for c in columns])
        totals = result.totals
        writer.writerow(["TOTAL", "", "", "", totals["allotted"], totals["extra"],
                         totals["reserved"], totals["consumed"], totals["available"]])
        return
    print_table(columns, [[getattr(line, c) for c in columns] for line in result.lines])
    totals = result.totals
    click.echo("")
    click.echo(f"year {year}, policy v{result.policy_version} (census {result.census_year})")
    click.echo("communes per tier: " + ", ".join(
        f"{name} {count}" for name, count in sorted(result.tier_counts.items())))
    click.echo("totals: " + ", ".join(f"{k} {v}" for k, v in totals.items()))


@quotas_group.command("billing")
@click.option("--year", type=int, help="Calendar year (default: this year).")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@pass_runtime
def billing(runtime: Runtime, year: int | None, fmt: str) -> None:
    """Partnership certificates billed to communes, not to the ministry."""
    year = _year(runtime, year)
    with runtime.unit_of_work() as session:
        lines = ledger.billing(session, year)
    total = sum((line.amount_mad for line in lines), Decimal(0))
    if fmt == "json":
        print_json({"year": year, "total_mad": str(total),
                    "lines": [asdict(line) for line in lines]})
        return
    print_table(["commune", "name", "certificates", "unit MAD", "amount MAD", "references"],
                [(x.commune_code, x.commune_name_fr, x.certificates, x.unit_price_mad,
                  x.amount_mad, ", ".join(x.references)) for x in lines])
    click.echo(f"total owed by communes for {year}: {total} MAD")


@quotas_group.command("partnership")
@click.argument("commune_code")
@click.option("--year", type=int, required=True)
@click.option("--count", type=int, required=True)
@click.option("--unit-price", required=True, help="Unit price in MAD, e.g. 850.00")
@click.option("--signed-on", required=True, help="Signing date, YYYY-MM-DD.")
@click.option("--reference", default="", help="The partnership agreement's reference.")
@pass_runtime
def partnership(runtime: Runtime, commune_code: str, year: int, count: int, unit_price: str,
                signed_on: str, reference: str) -> None:
    """Record extra certificates a commune buys for a year."""
    try:
        price = Decimal(unit_price)
        signed = date.fromisoformat(signed_on)
    except (InvalidOperation, ValueError) as exc:
        raise InvalidInput("--unit-price must be a number and --signed-on a date") from exc
    with runtime.unit_of_work() as session:
        added = ledger.add_partnership(session, runtime.clock, commune_code=commune_code,
                                       year=year, count=count, unit_price_mad=price,
                                       signed_on=signed, reference=reference, actor=ACTOR)
    click.echo(f"partnership {added.id}: {count} extra certificates for {commune_code} in {year}")


@quotas_group.command("policies")
@pass_runtime
def policies(runtime: Runtime) -> None:
    """The recorded quota policy versions and their tiers."""
    with runtime.unit_of_work() as session:
        specs = policy.list_policies(session)
    for spec in specs:
        click.echo(f"v{spec.version}: from {spec.first_year}, census {spec.census_year}, "
                   f"provincial services {spec.services_count} — {spec.description}")
        for tier in spec.tiers:
            upper = "∞" if tier.max_population is None else f"{tier.max_population:,}"
            click.echo(f"    {tier.name:<8} {tier.min_population:>9,} to {upper:>9}: "
                       f"{tier.yearly_count}/year")


COMMANDS = [refdata_group, quotas_group]

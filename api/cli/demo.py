"""``tawqi demo``: the main job, end to end, on the embedded default (SQLite + SoftHSM2).

It works in a fresh ``<var>/demo`` directory each time, so it can be run again and again, and
prints each step. Each chapter of the story is one function taking the Runtime and the
story's shared state; later capabilities add their chapters to ``CHAPTERS``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from api.cli.common import LazyRuntime
from api.runtime import Runtime
from core import migrate
from core.audit import verify
from core.config import Settings
from quotas import ledger, policy, refdata

ACTOR = "demo"
Story = dict[str, Any]


def say(text: str) -> None:
    click.echo(text)


def chapter(title: str) -> None:
    click.echo("")
    click.secho(f"== {title}", bold=True)


def quotas_chapter(runtime: Runtime, story: Story) -> None:
    chapter("Reference data and quotas")
    migrate.upgrade(runtime.engine)
    say("database migrated (Alembic, all packages)")
    with runtime.unit_of_work() as session:
        loaded = refdata.load(session, runtime.clock, actor=ACTOR)
        policy.ensure_default_policies(session, runtime.clock, actor=ACTOR)
    say("reference data loaded: " + "; ".join(loaded.lines()[:4]))
    year = runtime.clock.now().year
    story["year"] = year
    commune = ledger.Entity.parse("01.051.01.01")  # Al Hoceima
    with runtime.unit_of_work() as session:
        allot = ledger.allotment(session, commune, year)
        say(f"{allot.name_fr} ({allot.name_ar}), population {allot.population:,} at the "
            f"{allot.census_year} census: tier {allot.tier}, {allot.allotted} certificates "
            f"for {year} (policy v{allot.policy_version})")
        decision = ledger.reserve(session, runtime.clock, commune, year, actor=ACTOR,
                                  reference="demo")
        say(f"reserved one: {decision.remaining} left, {decision.reserved} reserved")
    with runtime.unit_of_work() as session:
        assert decision.reservation_id is not None
        released = ledger.release(session, runtime.clock, decision.reservation_id,
                                  actor=ACTOR)
        say(f"released it again (request withdrawn): {released.remaining} available")
    with runtime.unit_of_work() as session:
        national = ledger.report(session, year)
    totals = national.totals
    tiers = national.tier_counts
    say(f"national report {year} (census {national.census_year}): "
        f"{tiers.get('large', 0)} large / {tiers.get('medium', 0)} medium / "
        f"{tiers.get('small', 0)} small communes; {totals['allotted']:,} certificates "
        f"allotted including provincial services, {totals['available']:,} available")


def audit_chapter(runtime: Runtime, story: Story) -> None:
    chapter("Audit")
    with runtime.unit_of_work() as session:
        report = verify(session)
    say(f"audit chain {'intact' if report.ok else 'BROKEN'}: {report.checked} events")


CHAPTERS: list[Callable[[Runtime, Story], None]] = [quotas_chapter]
CLOSING: list[Callable[[Runtime, Story], None]] = [audit_chapter]


@click.command("demo")
@click.pass_obj
def demo(lazy: LazyRuntime) -> None:
    """Run the whole story on a fresh embedded database under <var>/demo."""
    base = Settings.from_env()
    var_dir = base.var_dir / "demo"
    shutil.rmtree(var_dir, ignore_errors=True)
    settings = base.replace(var_dir=var_dir, database_url="")
    if "softhsm" in Path(settings.pkcs11_module).name:
        # A fresh token directory too, so the story starts from empty tokens every time.
        from hsm.softhsm import write_softhsm_config

        os.environ["SOFTHSM2_CONF"] = str(write_softhsm_config(var_dir / "softhsm"))
    runtime = Runtime(settings)
    say(f"Tawqi demo — working in {var_dir}/ (SQLite + {settings.pkcs11_module})")
    story: Story = {}
    try:
        for step in [*CHAPTERS, *CLOSING]:
            step(runtime, story)
    finally:
        runtime.close()
    click.echo("")
    click.secho("demo complete", bold=True)


COMMANDS = [demo]

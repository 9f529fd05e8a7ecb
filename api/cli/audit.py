"""``tawqi audit``: read and verify the hash-chained audit log."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import cast

import click

from api.audit_anchor import anchor_now, verify_now
from api.cli.common import fail, pass_runtime, print_table
from api.runtime import Runtime
from core.audit import list_events
from core.errors import TawqiError
from hsm.errors import HsmError


@click.group("audit")
def audit() -> None:
    """The tamper-evident audit log."""


@audit.command("verify")
@click.option("--tsa-cert", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Trust only these TSA certificates (PEM), kept outside the database. "
                   "Default: the TSA certificates of the registry.")
@pass_runtime
def verify_command(runtime: Runtime, tsa_cert: Path | None) -> None:
    """Recompute the hash chain and check it against the anchored checkpoints (their
    time-stamps and the (seq, hash) each pinned); say what is proved and since when. Exit 1
    naming the first mismatch."""
    report = verify_now(runtime, tsa_cert_file=tsa_cert)
    if report.ok:
        click.echo(report.summary())
        return
    first = report.first_problem
    if first is not None and not report.problems and not report.chain.ok:
        click.echo(f"audit chain BROKEN at event {report.chain.first_broken_seq}: "
                   f"{report.chain.reason} ({report.chain.checked} events verified before "
                   "it)", err=True)
    else:
        click.echo(report.summary(), err=True)
        for problem in report.problems[1:]:
            click.echo(f"  also: {problem.message}", err=True)
    sys.exit(1)


@audit.command("anchor")
@click.option("--force", is_flag=True, help="Anchor even if nothing changed since the last "
                                            "checkpoint.")
@pass_runtime
def anchor_command(runtime: Runtime, force: bool) -> None:
    """Time-stamp the chain's head with our TSA and append the checkpoint to the anchor
    store (TAWQI_AUDIT_ANCHOR_DIR). Needs TAWQI_SERVICE_PIN; skips with a warning without."""
    if not runtime.settings.service_pin:
        click.echo("warning: TAWQI_SERVICE_PIN is not set: nothing anchored", err=True)
        return
    try:
        result = anchor_now(runtime, force=force)
    except (TawqiError, HsmError) as exc:
        fail(cast(TawqiError, exc))
    except OSError as exc:
        click.echo(f"error: cannot write to the anchor store: {exc}", err=True)
        sys.exit(1)
    if result.checkpoint is None:
        click.echo(f"nothing to anchor: {result.reason}")
        return
    cp = result.checkpoint
    click.echo(f"checkpoint {cp.number}: seq {cp.seq}, head {cp.head_hash}, time-stamped "
               f"{cp.time.isoformat(timespec='seconds')}, written to {result.location}")


@audit.command("tail")
@click.option("-n", "count", default=20, show_default=True)
@pass_runtime
def tail(runtime: Runtime, count: int) -> None:
    """Show the most recent events."""
    with runtime.unit_of_work() as session:
        events = list_events(session, newest_first=True, limit=count).items
    print_table(["seq", "at", "actor", "action", "object", "summary"],
                [(e.seq, e.at.isoformat(timespec="seconds"), e.actor, e.action,
                  f"{e.object_type}:{e.object_id}", e.summary[:60]) for e in reversed(events)])


COMMANDS = [audit]

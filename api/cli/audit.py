"""``tawqi audit``: read and verify the hash-chained audit log."""

from __future__ import annotations

import sys

import click

from api.cli.common import pass_runtime, print_table
from api.runtime import Runtime
from core.audit import list_events, verify


@click.group("audit")
def audit() -> None:
    """The tamper-evident audit log."""


@audit.command("verify")
@pass_runtime
def verify_command(runtime: Runtime) -> None:
    """Recompute the hash chain; exit 1 naming the first broken event."""
    with runtime.unit_of_work() as session:
        report = verify(session)
    if report.ok:
        click.echo(f"audit chain intact: {report.checked} events")
        return
    click.echo(f"audit chain BROKEN at event {report.first_broken_seq}: {report.reason} "
               f"({report.checked} events verified before it)", err=True)
    sys.exit(1)


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

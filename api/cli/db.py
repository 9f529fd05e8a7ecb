"""``tawqi db``: schema migrations."""

from __future__ import annotations

import click

from api.cli.common import pass_runtime
from api.runtime import Runtime
from core import migrate


@click.group("db")
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@click.option("--target", default="heads", show_default=True, help="Alembic revision.")
@pass_runtime
def upgrade(runtime: Runtime, target: str) -> None:
    """Apply the Alembic migrations of every package."""
    migrate.upgrade(runtime.engine, target)
    click.echo(f"database at {', '.join(sorted(migrate.current_heads(runtime.engine)))}")


COMMANDS = [db]

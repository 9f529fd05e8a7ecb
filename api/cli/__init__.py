"""The ``tawqi`` command line. Each domain adds its group in its own module here."""

from __future__ import annotations

import sys
from typing import Any

import click

from api.cli.common import LazyRuntime, fail
from core.errors import TawqiError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Tawqi: certificates and e-signatures for the permits platform."""
    ctx.obj = LazyRuntime()
    ctx.call_on_close(ctx.obj.close)


def _register() -> None:
    from api.cli import audit, db, delivery, demo, hsm, pki, quotas, serve, users

    for module in (db, audit, quotas, users, pki, delivery, serve, hsm, demo):
        for command in module.COMMANDS:
            cli.add_command(command)


_register()


def main(argv: list[str] | None = None) -> Any:
    try:
        return cli.main(args=argv, prog_name="tawqi", standalone_mode=False)
    except TawqiError as exc:
        fail(exc)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(1)

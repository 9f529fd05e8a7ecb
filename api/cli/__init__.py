"""The ``tawqi`` command line. Each domain adds its group in its own module here.

The top-level commands are listed in :data:`COMMANDS` with their one-line help and loaded
only when run: ``tawqi --help`` imports no domain, and ``tawqi quotas show`` imports only
what the quotas commands need (pyHanko, the token layer and Flask stay out). A test keeps
the table in step with the modules' own ``COMMANDS`` lists.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

# name -> (module, attribute, one-line help shown by ``tawqi --help``)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "apikeys": ("api.cli.users", "apikeys",
                "API keys of machine clients (the permits platform)."),
    "audit": ("api.cli.audit", "audit", "The tamper-evident audit log."),
    "batch": ("api.cli.delivery", "batch_group", "Amana courier batches and hand-overs."),
    "campaign": ("api.cli.campaigns", "campaign_group",
                 "Election campaigns: open, import, prepare, status, install, notify."),
    "ca": ("api.cli.pki", "ca_group",
           "The certificate authority: set-up, status, scheduled refresh."),
    "cert": ("api.cli.pki", "cert_group",
             "Holder certificates: issue, list, show, suspend, release, revoke, renew."),
    "contact": ("api.cli.delivery", "contact_group",
                "Designated contacts (one per prefecture/province)."),
    "crl": ("api.cli.pki", "crl_group", "Certificate revocation lists."),
    "db": ("api.cli.db", "db", "Database schema."),
    "delivery": ("api.cli.delivery", "delivery_group", "Delivery set-up."),
    "demo": ("api.cli.demo", "demo",
             "Run the whole story on a fresh embedded database under <var>/demo."),
    "hsm": ("api.cli.hsm", "hsm_group",
            "The token server (one token state for every process)."),
    "holder": ("api.cli.delivery", "holder_group", "Certificate holders."),
    "jobs": ("api.cli.jobs", "jobs_group",
             "Periodic jobs (CRL, OCSP, expiry warnings, reminders, purges, anchoring)."),
    "ocsp": ("api.cli.pki", "ocsp_group", "Pre-signed OCSP responses."),
    "outbox": ("api.cli.delivery", "outbox_group", "The notification outbox."),
    "quotas": ("api.cli.quotas", "quotas_group", "Yearly certificate quotas."),
    "refdata": ("api.cli.quotas", "refdata_group",
                "Regions, provinces, communes and census figures."),
    "request": ("api.cli.delivery", "request_group",
                "Certificate requests: submit, approve, personalise, activate."),
    "serve": ("api.cli.serve", "serve",
              "Serve the API and the public PKI endpoints (/ocsp, /tsa, /crl, /ca)."),
    "sign": ("api.cli.signing", "sign_group",
             "Signed PDFs: add an archive time-stamp (B-LTA)."),
    "users": ("api.cli.users", "users",
              "People's accounts: DGCL administrators, operators, contacts, holders."),
    "worker": ("api.cli.delivery", "worker",
               "Send the notification outbox (SMS, email) and run the periodic jobs."),
}


class LazyGroup(click.Group):
    """A group whose commands are imported when one is run, not to list them."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(COMMANDS) | set(self.commands))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            module, attribute, _help = COMMANDS[cmd_name]
            self.add_command(getattr(importlib.import_module(module), attribute), cmd_name)
        return self.commands.get(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][2] if name in COMMANDS
                 else self.commands[name].get_short_help_str())
                for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Tawqi: certificates and e-signatures for the permits platform."""
    from api.cli.common import LazyRuntime

    ctx.obj = LazyRuntime()
    ctx.call_on_close(ctx.obj.close)


def main(argv: list[str] | None = None) -> Any:
    from core.errors import TawqiError

    try:
        return cli.main(args=argv, prog_name="tawqi", standalone_mode=False)
    except TawqiError as exc:
        from api.cli.common import fail

        fail(exc)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(1)

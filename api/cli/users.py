"""``tawqi users`` and ``tawqi apikeys``: bootstrap accounts and machine keys.

Passwords are read from a prompt (hidden, asked twice) or from ``--password-file``; they
never appear on the command line, where ``ps`` and shell history would keep them. An API
key is printed once and cannot be shown again.
"""

from __future__ import annotations

from pathlib import Path

import click

from api import accounts
from api.cli.common import pass_runtime, print_table
from api.models import USER_ROLES
from api.runtime import Runtime

ACTOR = "cli"


def _passwords(runtime: Runtime) -> accounts.Passwords:
    return accounts.Passwords(runtime.settings.argon2_time_cost,
                              runtime.settings.argon2_memory_kib)


@click.group("users")
def users() -> None:
    """People's accounts: DGCL administrators, operators, contacts, holders."""


@users.command("create")
@click.argument("username")
@click.option("--role", type=click.Choice(USER_ROLES), required=True)
@click.option("--name", "display_name", required=True, help="Full name shown to others.")
@click.option("--province", "province_code", help="Province code of a contact, e.g. 01.051.")
@click.option("--holder-id", type=int, help="The delivery holder of a holder account.")
@click.option("--password-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Read the password from this file instead of a prompt.")
@pass_runtime
def create(runtime: Runtime, username: str, role: str, display_name: str,
           province_code: str | None, holder_id: int | None,
           password_file: Path | None) -> None:
    """Create a user account."""
    if password_file is not None:
        password = password_file.read_text(encoding="utf-8").rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    with runtime.unit_of_work() as session:
        user = accounts.create_user(session, runtime.clock, _passwords(runtime),
                                    username=username, display_name=display_name, role=role,
                                    password=password, province_code=province_code,
                                    holder_id=holder_id, actor=ACTOR)
        click.echo(f"user {user.id} {user.username} ({user.role}) created")


@users.command("list")
@click.option("--role", type=click.Choice(USER_ROLES))
@pass_runtime
def list_command(runtime: Runtime, role: str | None) -> None:
    """List user accounts."""
    with runtime.unit_of_work() as session:
        found, _ = accounts.list_users(session, role=role, limit=10_000)
        rows = [(u.id, u.username, u.display_name, u.role, u.province_code or "",
                 u.holder_id or "", "yes" if u.active else "no") for u in found]
    print_table(["id", "username", "name", "role", "province", "holder", "active"], rows)


@users.command("disable")
@click.argument("user_id", type=int)
@pass_runtime
def disable(runtime: Runtime, user_id: int) -> None:
    """Disable an account and end its sessions."""
    with runtime.unit_of_work() as session:
        user = accounts.set_active(session, runtime.clock, user_id, False, actor=ACTOR)
        click.echo(f"user {user.username} disabled")


@click.group("apikeys")
def apikeys() -> None:
    """API keys of machine clients (the permits platform)."""


@apikeys.command("create")
@click.argument("name")
@pass_runtime
def create_key(runtime: Runtime, name: str) -> None:
    """Create a key; it is printed once, on standard output."""
    with runtime.unit_of_work() as session:
        issued = accounts.create_api_key(session, runtime.clock, name=name, actor=ACTOR)
        key_id = issued.record.id
    click.echo(f"API key {key_id} for {name!r} (store it now; it is not shown again):",
               err=True)
    click.echo(issued.key)


@apikeys.command("list")
@click.option("--all", "include_revoked", is_flag=True, help="Include revoked keys.")
@pass_runtime
def list_keys(runtime: Runtime, include_revoked: bool) -> None:
    """List keys (their prefixes, never the keys)."""
    with runtime.unit_of_work() as session:
        keys, _ = accounts.list_api_keys(session, include_revoked=include_revoked,
                                         limit=10_000)
        rows = [(k.id, k.prefix, k.name, k.created_at.isoformat(timespec="seconds"),
                 k.revoked_at.isoformat(timespec="seconds") if k.revoked_at else "")
                for k in keys]
    print_table(["id", "prefix", "name", "created", "revoked"], rows)


@apikeys.command("revoke")
@click.argument("key_id", type=int)
@pass_runtime
def revoke(runtime: Runtime, key_id: int) -> None:
    """Revoke a key at once."""
    with runtime.unit_of_work() as session:
        key = accounts.revoke_api_key(session, runtime.clock, key_id, actor=ACTOR)
        click.echo(f"API key {key.id} ({key.prefix}) revoked")


@apikeys.command("redirect")
@click.argument("key_id", type=int)
@click.argument("uri")
@pass_runtime
def redirect(runtime: Runtime, key_id: int, uri: str) -> None:
    """Register a redirect URI of the key's client for /oauth2/authorize (https, or http
    on the loopback); its client_id is the key's prefix."""
    from pki.signing.oauth import redirects, register_redirect

    with runtime.unit_of_work() as session:
        key = accounts.get_api_key(session, key_id)
        client = f"apikey:{key.id}"
        register_redirect(session, runtime.clock, client, uri, actor=ACTOR)
        click.echo(f"client_id {key.prefix}: " + " ".join(redirects(session, client)))


COMMANDS = [users, apikeys]

"""The command line loads a command's module only when that command runs."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys

import click

import api.cli
from api.cli import COMMANDS, cli


def _command_modules() -> list[str]:
    return [f"api.cli.{info.name}" for info in pkgutil.iter_modules(api.cli.__path__)
            if info.name != "common"]


def test_table_matches_every_module_commands() -> None:
    listed: dict[str, tuple[str, str]] = {}
    for module_name in _command_modules():
        module = importlib.import_module(module_name)
        for command in getattr(module, "COMMANDS", []):
            attribute = next(name for name, value in vars(module).items()
                             if value is command)
            assert command.name is not None
            listed[command.name] = (module_name, attribute)
    assert listed == {name: (module, attribute)
                      for name, (module, attribute, _help) in COMMANDS.items()}


def test_every_listed_command_resolves_and_help_lines_are_current() -> None:
    context = click.Context(cli)
    for name, (_module, _attribute, summary) in COMMANDS.items():
        command = cli.get_command(context, name)
        assert command is not None and command.name == name
        assert summary == command.get_short_help_str(limit=1000), \
            f"tawqi {name}: the table's help line differs from the command's"


def test_help_imports_no_domain_nor_heavy_library() -> None:
    probe = ("import sys; from api.cli import main\n"
             "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
             "heavy = [m for m in ('sqlalchemy', 'pyhanko', 'pkcs11', 'flask', 'cryptography',"
             " 'quotas', 'delivery', 'pki', 'hsm', 'api.runtime') if m in sys.modules]\n"
             "print('HEAVY', heavy)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True).stdout
    assert "HEAVY []" in out
    assert "quotas" in out and "worker" in out  # the listing itself is complete


def test_quotas_commands_do_not_load_signing_or_tokens() -> None:
    # Nor the composition root, nor SQLAlchemy's PostgreSQL dialect (its asyncio drivers):
    # on SQLite, the dialect's insert is imported when an upsert runs (core.db).
    probe = ("import sys; import api.cli.quotas\n"
             "print('HEAVY', [m for m in ('pyhanko', 'pkcs11', 'flask', 'hsm', 'api.wiring',"
             " 'delivery', 'pki', 'sqlalchemy.dialects.postgresql') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True).stdout
    assert "HEAVY []" in out

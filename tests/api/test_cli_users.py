"""``tawqi users create``, ``tawqi apikeys create|redirect`` on a migrated SQLite database."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from api.cli import cli
from core.config import Settings
from core.db import make_engine
from core.migrate import upgrade


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    values = {"TAWQI_VAR_DIR": str(tmp_path), "TAWQI_ARGON2_TIME_COST": "1",
              "TAWQI_ARGON2_MEMORY_KIB": "256"}
    engine = make_engine(Settings(var_dir=tmp_path).effective_database_url)
    upgrade(engine)
    engine.dispose()
    return values


def test_users_and_keys(env: dict[str, str], tmp_path: Path) -> None:
    runner = CliRunner()
    secret = tmp_path / "pw"
    secret.write_text("a long enough passphrase\n")
    result = runner.invoke(cli, ["users", "create", "dgcl.admin", "--role", "dgcl_admin",
                                 "--name", "Admin DGCL", "--password-file", str(secret)],
                           env=env)
    assert result.exit_code == 0, result.output
    assert "dgcl.admin (dgcl_admin) created" in result.output
    prompted = runner.invoke(cli, ["users", "create", "op1", "--role", "operator",
                                   "--name", "Operator"], env=env,
                             input="another long passphrase\nanother long passphrase\n")
    assert prompted.exit_code == 0, prompted.output
    listed = runner.invoke(cli, ["users", "list"], env=env)
    assert "dgcl.admin" in listed.output and "op1" in listed.output
    assert "passphrase" not in listed.output
    key = runner.invoke(cli, ["apikeys", "create", "permits platform"], env=env)
    assert key.exit_code == 0, key.output
    printed = key.stdout.strip().splitlines()[-1]
    assert printed.startswith("twk_")
    keys = runner.invoke(cli, ["apikeys", "list"], env=env)
    assert printed.split("_")[1] in keys.output and printed not in keys.output
    revoked = runner.invoke(cli, ["apikeys", "revoke", "1"], env=env)
    assert revoked.exit_code == 0 and "revoked" in revoked.output


def test_apikey_redirect_uris(env: dict[str, str]) -> None:
    """``tawqi apikeys redirect``: the OAuth 2.0 redirect URIs of a client (https, or http
    on the loopback), registered once, listed with the key's client_id."""
    runner = CliRunner()
    key = runner.invoke(cli, ["apikeys", "create", "permits platform"], env=env)
    prefix = key.stdout.strip().splitlines()[-1].split("_")[1]
    done = runner.invoke(cli, ["apikeys", "redirect", "1", "https://permis.example.ma/cb"],
                         env=env)
    assert done.exit_code == 0, done.output
    assert f"client_id {prefix}: https://permis.example.ma/cb" in done.output
    again = runner.invoke(cli, ["apikeys", "redirect", "1", "http://127.0.0.1:8080/cb"],
                          env=env)
    assert again.output.count("https://permis.example.ma/cb") == 1
    assert "http://127.0.0.1:8080/cb" in again.output
    refused = runner.invoke(cli, ["apikeys", "redirect", "1", "http://permis.example.ma/cb"],
                            env=env)
    assert refused.exit_code != 0
    unknown = runner.invoke(cli, ["apikeys", "redirect", "9", "https://permis.example.ma/cb"],
                            env=env)
    assert unknown.exit_code != 0

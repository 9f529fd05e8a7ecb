"""The environment of a ``tawqi`` command run through click's runner in a test: an embedded
database and a SoftHSM2 directory of the test's own, loaded in the test's process."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from api.cli import cli
from hsm import default_module_path
from hsm.softhsm import use_config, write_softhsm_config

CLI_SERVICE_PIN = "48291735"


def cli_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Forget the caller's TAWQI_* settings (but the test database), point SoftHSM2 at a
    fresh token directory, and return the variables the commands run with."""
    conf = write_softhsm_config(tmp_path / "softhsm")
    for key in list(os.environ):
        if key.startswith("TAWQI_") and key != "TAWQI_TEST_DATABASE_URL":
            monkeypatch.delenv(key)
    monkeypatch.setenv("SOFTHSM2_CONF", str(conf))
    use_config(conf, default_module_path())
    return {"TAWQI_VAR_DIR": str(tmp_path / "var"), "TAWQI_SO_PIN": "so-pin-for-tests",
            "TAWQI_SERVICE_PIN": CLI_SERVICE_PIN, "TAWQI_PUBLIC_URL": "http://pki.tawqi.ma",
            "TAWQI_POLICY_OID": "1.3.6.1.4.1.32473.1",
            # one process: load SoftHSM2 here rather than start a token server
            "TAWQI_PKCS11_SERVER": "off"}


def invoke(env: dict[str, str], *args: str) -> Result:
    """``tawqi ARGS...`` with ``env``, exceptions raised as they are."""
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def run_ok(env: dict[str, str], *args: str) -> str:
    """``tawqi ARGS...``'s output; it must succeed and never show the service PIN."""
    result = invoke(env, *args)
    assert result.exit_code == 0, result.output
    assert CLI_SERVICE_PIN not in result.output
    return result.output

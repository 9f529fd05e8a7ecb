"""The stack runner refuses to start without TAWQI_PUBLIC_URL, with an inline secret, with a
missing secret file or with an example secret; nothing is started then."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NAMES = ("so_pin", "service_pin", "root_pin", "envelope_token_pin", "secret_key")


def _up(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("TAWQI_")}
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "stack.py"), "up",
                           "--state", str(tmp_path / "state"), "--secrets",
                           str(tmp_path / "secrets")], env={**base, **env},
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
def secret_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "secrets"
    directory.mkdir()
    for name in NAMES:
        (directory / name).write_text(secrets.token_hex(8))
    return directory


def test_public_url_is_required(tmp_path: Path, secret_dir: Path) -> None:
    done = _up(tmp_path)
    assert done.returncode == 1 and "TAWQI_PUBLIC_URL" in done.stderr


def test_inline_secret_refused(tmp_path: Path, secret_dir: Path) -> None:
    done = _up(tmp_path, TAWQI_PUBLIC_URL="https://pki.example.ma", TAWQI_SO_PIN="12345678")
    assert done.returncode == 1 and "files only" in done.stderr
    assert "12345678" not in done.stderr + done.stdout


def test_missing_and_example_secrets_refused(tmp_path: Path, secret_dir: Path) -> None:
    (secret_dir / "root_pin").unlink()
    done = _up(tmp_path, TAWQI_PUBLIC_URL="https://pki.example.ma")
    assert done.returncode == 1 and "missing secret file" in done.stderr
    example = (ROOT / "deploy" / "secrets" / "so_pin.example").read_text()
    (secret_dir / "root_pin").write_text(secrets.token_hex(8))
    (secret_dir / "so_pin").write_text(example)
    done = _up(tmp_path, TAWQI_PUBLIC_URL="https://pki.example.ma")
    assert done.returncode == 1 and "example secret" in done.stderr
    assert not (tmp_path / "state" / "stack.json").exists()  # nothing was started

"""The command line: ``tawqi demo`` end to end (console backends) and ``tawqi worker``."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from api.cli import cli
from core.clock import SystemClock
from core.config import Settings
from core.db import make_engine, make_session_factory, transaction
from delivery import outbox
from delivery.backends import ConsoleInbox
from delivery.outbox import Notification
from tests.delivery.conftest import SmtpSink


def test_demo_story_delivers_pins_that_appear_nowhere_else(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, softhsm_conf: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    sent: list[str] = []
    original = ConsoleInbox.add

    def spy(self: ConsoleInbox, channel: str, to: str, body: str) -> None:
        sent.append(body)
        original(self, channel, to, body)

    monkeypatch.setattr(ConsoleInbox, "add", spy)
    for name in ("TAWQI_SO_PIN", "TAWQI_SERVICE_PIN", "TAWQI_ENVELOPE_TOKEN_PIN",
                 "TAWQI_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TAWQI_VAR_DIR", str(tmp_path / "var"))
    caplog.set_level(logging.DEBUG)
    result = CliRunner().invoke(cli, ["demo"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    out = result.output
    assert "is refused: quota exhausted" in out
    assert "batch 1 shipped by Amana, tracking EE123456785MA" in out
    assert "•••••• : code PIN" in out  # the code first, masked in the console
    assert "changed his PIN and signed a permit" in out and "ready to sign: yes" in out
    assert "sealed PINs still waiting: 0" in out
    assert "audit chain intact" in out and "demo complete" in out
    pins = {m for body in sent for m in re.findall(r"(?<!\d)(\d{6,8})(?!\d)", body)}
    assert "a list with a typo is refused whole: line 4 [cin]" in out
    assert "Présidente du conseil de la commune (رئيسة مجلس الجماعة)" in out
    assert "then 1 outgoing certificate(s) revoked in bulk (affiliationChanged)" in out
    assert "blocked communes: 0; largest gap: 0 day(s)" in out
    # One PIN per personalised token (four device tokens; the signing chapter's hosted
    # token; the election chapter's two device tokens) and the signing chapter's one-time
    # code.
    assert len(pins) == 8
    database = tmp_path / "var" / "demo" / "tawqi.db"
    stored = "".join(path.read_bytes().decode("latin-1")
                     for path in (database, Path(f"{database}-wal")) if path.exists())
    for pin in pins:
        pattern = rf"(?<!\d){pin}(?!\d)"
        assert not re.search(pattern, out)
        assert not re.search(pattern, caplog.text)
        assert not re.search(pattern, stored)


def test_worker_once_sends_through_the_configured_backend(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, smtp_sink: SmtpSink) -> None:
    monkeypatch.setenv("TAWQI_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.delenv("TAWQI_DATABASE_URL", raising=False)
    monkeypatch.setenv("TAWQI_EMAIL_BACKEND", "smtp")
    monkeypatch.setenv("TAWQI_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("TAWQI_SMTP_PORT", str(smtp_sink.port))
    monkeypatch.setenv("TAWQI_SMTP_FROM", "tawqi@tawqi.test")
    monkeypatch.setenv("TAWQI_SMTP_CA_FILE", smtp_sink.ca_file)
    runner = CliRunner()
    assert runner.invoke(cli, ["db", "upgrade"], catch_exceptions=False).exit_code == 0
    result = runner.invoke(cli, ["worker", "--once"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "claimed 0, sent 0" in result.output
    engine = make_engine(Settings.from_env().effective_database_url)
    with transaction(make_session_factory(engine)) as db:
        outbox.enqueue(db, SystemClock(), Notification(
            channel="email", recipient="contact@interieur.gov.ma",
            template="batch.dispatched", dedupe_key="cli-1",
            params={"contact_name": "Samira", "count": 1, "province_fr": "Al Hoceima",
                    "province_ar": "الحسيمة", "tracking_number": "EE123456785MA"}))
    engine.dispose()
    result = runner.invoke(cli, ["worker", "--once"], catch_exceptions=False)
    assert "claimed 1, sent 1" in result.output, result.output
    assert [str(m["To"]) for m in smtp_sink.messages] == ["contact@interieur.gov.ma"]
    result = runner.invoke(cli, ["outbox", "list", "--status", "sent"],
                           catch_exceptions=False)
    assert "batch.dispatched" in result.output

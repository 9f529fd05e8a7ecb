"""``tawqi campaign`` and ``tawqi holder mandates|change-mandate|set-civility`` on the
embedded default: a campaign opened, a list with an error refused with its line number, the
corrected list imported, the status table and the installation's dry run."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from click.testing import CliRunner

from api.cli import cli
from core.clock import SystemClock
from core.config import Settings
from core.db import make_engine, make_session_factory, transaction
from quotas import policy, refdata
from tests.cli_support import cli_environment
from tests.delivery.conftest import designation, registration

HEADER = ("commune_code,role,cin,given_name_fr,surname_fr,given_name_ar,surname_ar,civility,"
          "phone,email")


def test_campaign_commands(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = cli_environment(tmp_path, monkeypatch)
    runner = CliRunner(env={**env, "TAWQI_DATABASE_URL": ""})
    assert runner.invoke(cli, ["db", "upgrade"], catch_exceptions=False).exit_code == 0
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    engine = make_engine(Settings.from_env().effective_database_url)
    clock = SystemClock()
    from delivery import contacts, holders

    with transaction(make_session_factory(engine)) as session:
        refdata.load(session, clock)
        policy.ensure_default_policies(session, clock)
        contacts.designate_contact(session, clock, designation(), actor="governor")
        sitting = holders.register_holder(session, clock, registration("01.051.01.05"),
                                          actor="contact")
        sitting_id, sitting_cin = sitting.id, sitting.cin
    engine.dispose()

    def run(*args: str) -> str:
        result = runner.invoke(cli, list(args), catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    assert "mrs" in run("holder", "set-civility", str(sitting_id), "mrs")
    today = date.today().isoformat()
    assert "campaign 1" in run("campaign", "open", "--name", "Communales", "--scope",
                               "communes", "--code", "01.051.01.05", "--code", "01.051.03.01",
                               "--installation-date", today, "--funding", "extra")
    bad = tmp_path / "bad.csv"
    bad.write_text(f"{HEADER}\n01.051.01.05,president,{sitting_cin},A,B,أ,ب,M,0661234567,"
                   "a@b.ma\n01.051.01.05,president,ZZ1,A,B,أ,ب,M,0661234567,a@b.ma\n",
                   encoding="utf-8")
    refused = runner.invoke(cli, ["campaign", "import", "1", str(bad)])
    assert refused.exit_code != 0
    assert "bad.csv:3: [role]" in refused.output or "bad.csv:3: [cin]" in refused.output
    good = tmp_path / "good.csv"
    good.write_text(f"{HEADER}\n01.051.01.05,president,{sitting_cin},A,B,أ,ب,Mme,0661234567,"
                    "a@b.ma\n01.051.03.01,president,ZZ123456,Omar,Idrissi,عمر,الإدريسي,M,"
                    "0661234568,o@b.ma\n", encoding="utf-8")
    out = run("campaign", "import", "1", str(good))
    assert "1 new holder(s), 1 re-elected" in out and "1 request(s) submitted" in out
    status = run("campaign", "status", "1")
    assert "2 seat(s), 2 blocked" in status and "re-elected" in status  # no certificates
    assert "would revoke 0 certificate(s)" in run("campaign", "install", "1", "--dry-run")
    history = run("holder", "mandates", str(sitting_id))
    assert "Présidente du conseil de la commune" in history

"""``tawqi campaign prepare`` and ``install --activate`` on the embedded default with a CA and
an envelope token of the test's own: the progress bar, a second run that prepares nothing
new, the hosted tokens activated at installation. Then ``tawqi cert revoke`` on one of them
closes its request (``ended``), while ``cert suspend`` and ``release`` leave the other one
active."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from api.cli import cli
from core.audit import AuditEvent
from core.clock import SystemClock
from core.config import Settings
from core.db import make_engine, make_session_factory, transaction
from delivery.models import CampaignEntry, CertificateRequest
from quotas import policy, refdata
from tests.cli_support import cli_environment
from tests.delivery.conftest import designation, registration

pytestmark = pytest.mark.hsm

HEADER = ("commune_code,role,cin,given_name_fr,surname_fr,given_name_ar,surname_ar,civility,"
          "phone,email")


def test_prepare_resumes_and_install_activates(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    env = {**cli_environment(tmp_path, monkeypatch),
           "TAWQI_ENVELOPE_TOKEN_PIN": "61524378"}
    runner = CliRunner(env={**env, "TAWQI_DATABASE_URL": ""})

    def run(*args: str) -> str:
        result = runner.invoke(cli, list(args), catch_exceptions=False)
        assert result.exit_code == 0, result.output
        assert env["TAWQI_SERVICE_PIN"] not in result.output
        return result.output

    run("db", "upgrade")
    run("ca", "init")
    run("delivery", "setup")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    engine = make_engine(Settings.from_env().effective_database_url)
    sessions = make_session_factory(engine)
    clock = SystemClock()
    from delivery import contacts, holders

    with transaction(sessions) as session:
        refdata.load(session, clock)
        policy.ensure_default_policies(session, clock)
        contacts.designate_contact(session, clock, designation(), actor="governor")
        holders.register_holder(session, clock, registration("01.051.01.05"), actor="contact")

    today = date.today().isoformat()
    run("campaign", "open", "--name", "Communales", "--scope", "communes", "--code",
        "01.051.01.05", "--code", "01.051.03.01", "--installation-date", today)
    elected = tmp_path / "elected.csv"
    elected.write_text(
        f"{HEADER}\n01.051.01.05,president,ZZ123456,Omar,Idrissi,عمر,الإدريسي,M,0661234568,"
        "o@b.ma\n01.051.03.01,president,ZZ654321,Salma,Alaoui,سلمى,العلوي,Mme,0661234569,"
        "s@b.ma\n", encoding="utf-8")
    assert "2 request(s) submitted" in run("campaign", "import", "1", str(elected),
                                           "--token-form", "hosted")

    first = run("campaign", "prepare", "1", "--identity-check", "CIN checked", "--batch", "1")
    assert "preparing" in first  # the progress bar's label (no terminal: printed once)
    assert "2 token(s) personalised (2 request(s) approved) in 2 batch(es)" in first
    second = run("campaign", "prepare", "1", "--identity-check", "CIN checked")
    assert "0 token(s) personalised (0 request(s) approved) in 0 batch(es)" in second

    installed = run("campaign", "install", "1", "--activate")
    assert "2 token(s) activated; campaign installed" in installed
    with transaction(sessions) as session:
        rows = list(session.execute(
            select(CertificateRequest.id, CertificateRequest.status,
                   CertificateRequest.certificate_serial)
            .join(CampaignEntry, CampaignEntry.request_id == CertificateRequest.id)
            .order_by(CertificateRequest.id)))
    assert [status for _, status, _ in rows] == ["active", "active"]
    (revoked_id, _, revoked_serial), (kept_id, _, kept_serial) = rows
    assert revoked_serial and kept_serial

    # suspension and release leave the request active; a revocation closes it
    run("cert", "suspend", kept_serial, "--note", "token reported missing")
    run("cert", "release", kept_serial, "--note", "found")
    assert "revoked (privilegeWithdrawn)" in run("cert", "revoke", revoked_serial,
                                                 "--reason", "privilegeWithdrawn")
    with transaction(sessions) as session:
        revoked = session.get_one(CertificateRequest, revoked_id)
        kept = session.get_one(CertificateRequest, kept_id)
        assert (revoked.status, kept.status) == ("ended", "active")
        assert "privilegeWithdrawn" in revoked.status_reason
        ended = session.scalars(select(AuditEvent).where(
            AuditEvent.action == "delivery.request.ended",
            AuditEvent.object_id == str(revoked_id))).one()
        assert ended.actor == "cli"
    engine.dispose()

"""The operators' commands, end to end on an embedded database and a SoftHSM2 directory of
their own: ca init, cert issue/list/show/suspend/release/revoke, crl publish, ocsp export."""

from __future__ import annotations

import io
import json
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509
from pyhanko.pdf_utils.reader import PdfFileReader

from api.cli import cli
from core.clock import FrozenClock
from hsm import default_module_path
from pki.errors import AuthorityAlreadyInitialised, InvalidRevocationReason
from pki.profiles import PolicyArcNotSet
from pki.signer import to_asn1
from pki.signing.pades import Level, PadesRequest, PadesService
from tests.cli_support import cli_environment
from tests.pki.test_pades_pki import FROZEN_AT, build_pki, permit_pdf
from tests.pki.tools import openssl

pytestmark = pytest.mark.hsm


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    return cli_environment(tmp_path, monkeypatch)


def _run(env: dict[str, str], *args: str, input: str | None = None) -> str:
    result = CliRunner().invoke(cli, list(args), env=env, input=input,
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_ca_init_refuses_without_a_policy_arc(env: dict[str, str]) -> None:
    """A real CA names its own arc: without TAWQI_POLICY_OID, ca init says why and stops
    before any token is created."""
    env = {k: v for k, v in env.items() if k != "TAWQI_POLICY_OID"}
    _run(env, "db", "upgrade")
    refused = CliRunner().invoke(cli, ["ca", "init"], env=env)
    assert isinstance(refused.exception, PolicyArcNotSet)
    assert "TAWQI_POLICY_OID is not set" in str(refused.exception)
    assert "Private Enterprise Number" in str(refused.exception)
    assert not (Path(env["TAWQI_VAR_DIR"]) / "pki" / "root.pem").exists()
    assert "tawqi-root" not in pkcs11_tool_list_tokens()


def pkcs11_tool_list_tokens() -> str:
    return subprocess.run(["pkcs11-tool", "--module", default_module_path(), "-L"],
                          capture_output=True, text=True, check=False).stdout


def test_operator_flow(env: dict[str, str], tmp_path: Path) -> None:
    _run(env, "db", "upgrade")
    out = _run(env, "ca", "init")
    assert "root certificate written to" in out and "48291735" not in out
    root_pem = Path(env["TAWQI_VAR_DIR"]) / "pki" / "root.pem"
    assert x509.load_pem_x509_certificate(root_pem.read_bytes()).subject.rfc4514_string() \
        == "CN=Tawqi Root CA,O=Tawqi,C=MA"
    again = CliRunner().invoke(cli, ["ca", "init"], env=env)
    assert isinstance(again.exception, AuthorityAlreadyInitialised)  # main() prints it

    pem_out = tmp_path / "holder.pem"
    out = _run(env, "cert", "issue", "--token", "holder-1", "--create-token", "--cin", "k12345",
               "--given-name", "Mohamed", "--surname", "Benali", "--title", "Président",
               "--org", "جماعة أكادير", "--out", str(pem_out), input="73920145\n")
    serial = out.split("serial ", 1)[1].split()[0]
    assert "73920145" not in out
    cert = x509.load_pem_x509_certificate(pem_out.read_bytes())
    assert format(cert.serial_number, "x") == serial

    listed = json.loads(_run(env, "cert", "list", "--profile", "holder", "--format", "json"))
    assert [c["serial"] for c in listed] == [serial] and listed[0]["cin"] == "K12345"
    assert "suspended" in _run(env, "cert", "suspend", serial, "--note", "inquiry")
    assert ": issued" in _run(env, "cert", "release", serial)
    bad = CliRunner().invoke(cli, ["cert", "revoke", serial, "--reason", "bored"], env=env)
    assert isinstance(bad.exception, InvalidRevocationReason)
    assert "affiliationChanged" in _run(env, "cert", "revoke", serial, "--reason",
                                        "affiliation-changed")
    crl_dir = tmp_path / "crl"
    out = _run(env, "crl", "publish", "--root", "--out", str(crl_dir))
    assert "CA 2: CRL #" in out and "CA 1: CRL #2" in out
    issuing = _run(env, "ca", "show", "--pem", "issuing")
    chain = tmp_path / "issuing.pem"
    chain.write_text(issuing)
    crl_pem = tmp_path / "crl.pem"
    openssl("crl", "-inform", "DER", "-in", crl_dir / "2.crl", "-out", crl_pem)
    verdict = openssl("verify", "-CAfile", root_pem, "-untrusted", chain, "-crl_check",
                      "-CRLfile", crl_pem, pem_out, check=False)
    assert verdict.returncode != 0 and "certificate revoked" in verdict.stdout + verdict.stderr
    assert "serial" in _run(env, "cert", "show", serial)
    out = _run(env, "ocsp", "export", str(tmp_path / "static"))
    assert "3 responses written" in out
    assert (tmp_path / "static" / "nginx.conf.example").exists()
    assert "audit chain intact" in _run(env, "audit", "verify")


def test_wrong_token_pin_is_a_clean_error(env: dict[str, str]) -> None:
    _run(env, "db", "upgrade")
    _run(env, "ca", "init")
    _run(env, "cert", "issue", "--token", "holder-2", "--create-token", "--cin", "AB1",
         "--given-name", "A", "--surname", "B", "--title", "C", "--org", "D",
         input="73920145\n")
    result = CliRunner().invoke(cli, ["cert", "issue", "--token", "holder-2", "--cin", "AB1",
                                      "--given-name", "A", "--surname", "B", "--title", "C",
                                      "--org", "D"], env=env, input="11111111\n")
    assert result.exit_code in (1, 2) and "Wrong PIN" in result.output
    assert "Traceback" not in result.output


def test_revoke_bulk(env: dict[str, str], tmp_path: Path) -> None:
    _run(env, "db", "upgrade")
    _run(env, "ca", "init")
    serials = []
    for n in range(3):
        out = _run(env, "cert", "issue", "--token", f"bulk-{n}", "--create-token", "--cin",
                   f"BK{n}1", "--given-name", "A", "--surname", "B", "--title", "Président",
                   "--org", "Commune", input="73920145\n")
        serials.append(out.split("serial ", 1)[1].split()[0])
    listing = tmp_path / "outgoing.txt"
    listing.write_text("# outgoing presidents\n" + "\n".join(serials) + "\n\n")
    bad = tmp_path / "bad.txt"
    bad.write_text(serials[0] + "\nfeedface\n")
    refused = CliRunner().invoke(cli, ["cert", "revoke-bulk", "--from-file", str(bad),
                                       "--reason", "affiliationChanged"], env=env)
    assert refused.exit_code == 2 and "feedface: unknown serial" in refused.output
    plan = _run(env, "cert", "revoke-bulk", "--from-file", str(listing), "--reason",
                "affiliation-changed", "--dry-run")
    assert all(f"would revoke {s} (affiliationChanged)" in plan for s in serials)
    assert "would revoke 3, skipped 0" in plan
    assert json.loads(_run(env, "cert", "list", "--status", "revoked", "--format",
                           "json")) == []
    done = _run(env, "cert", "revoke-bulk", "--from-file", str(listing), "--reason",
                "affiliation-changed")
    assert "revoked 3, skipped 0" in done and "CRL #" in done and "revoking" in done
    rerun = CliRunner().invoke(cli, ["cert", "revoke-bulk", "--from-file", str(listing),
                                     "--reason", "affiliationChanged", "--format", "json"],
                               env=env, catch_exceptions=False)
    assert rerun.exit_code == 0, rerun.output
    again = json.loads(rerun.stdout.split("audit log anchored")[0])
    assert again["revoked"] == [] and sorted(again["skipped"]) == sorted(serials)
    assert "audit chain intact" in _run(env, "audit", "verify")


def test_sign_extend_adds_archive_timestamps(env: dict[str, str], tmp_path: Path) -> None:
    """``tawqi sign extend IN OUT``: a signed PDF (here signed elsewhere, B-B) gets our
    TSA's archive time-stamp with its validation data; extending again adds another."""
    _run(env, "db", "upgrade")
    _run(env, "ca", "init")
    pki = build_pki()
    service = PadesService(FrozenClock(FROZEN_AT), trust_roots=[pki.root])
    source = tmp_path / "signed.pdf"
    source.write_bytes(service.sign(permit_pdf(), pki.signer(), PadesRequest(level=Level.B_B))
                       .data)
    once, twice = tmp_path / "lta.pdf", tmp_path / "lta2.pdf"
    out = _run(env, "sign", "extend", str(source), str(once))
    assert "PAdES B-LTA, 1 signature(s), archive time-stamp #1" in out
    _run(env, "sign", "extend", str(once), str(twice))
    reader = PdfFileReader(io.BytesIO(twice.read_bytes()))
    stamps = list(reader.embedded_timestamp_signatures)
    assert [s.field_name for s in stamps] == ["ArchiveTimeStamp1", "ArchiveTimeStamp2"]
    issuing = x509.load_pem_x509_certificate(_run(env, "ca", "show", "--pem", "issuing")
                                             .encode())
    for stamp in stamps:
        assert stamp.signer_cert.issuer.dump() == to_asn1(issuing).subject.dump()
    assert "/DSS" in reader.root
    unsigned = tmp_path / "unsigned.pdf"
    unsigned.write_bytes(permit_pdf())
    refused = CliRunner().invoke(cli, ["sign", "extend", str(unsigned), str(tmp_path / "x")],
                                 env=env)
    assert refused.exit_code == 2 and "no signature to extend" in refused.output

"""The quota commands, run as an operator would (on a fresh SQLite file)."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from pathlib import Path

import pytest

from api.cli import main


@pytest.fixture
def tawqi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    monkeypatch.setenv("TAWQI_VAR_DIR", str(tmp_path))
    monkeypatch.delenv("TAWQI_DATABASE_URL", raising=False)

    def run(*argv: str, expect: int = 0) -> str:
        capsys.readouterr()
        try:
            main(list(argv))
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        out, err = capsys.readouterr()
        assert code == expect, f"exit {code}: {out}{err}"
        return out + err

    run("db", "upgrade")
    run("refdata", "load")
    return run


def test_refdata_load_prints_counts_and_is_idempotent(tawqi) -> None:
    out = tawqi("refdata", "load")
    assert "communes: 1503" in out and "rows created: 0, updated: 0" in out


def test_quotas_show_json(tawqi) -> None:
    data = json.loads(tawqi("quotas", "show", "01.051.01.03", "--year", "2026",
                            "--format", "json"))
    assert {"entity", "year", "tier", "allotted", "reserved", "consumed",
            "available"} <= data.keys()
    assert (data["entity"], data["tier"], data["allotted"]) == ("commune:01.051.01.03",
                                                               "medium", 4)


def test_quotas_show_unknown_code_is_a_clear_error(tawqi) -> None:
    out = tawqi("quotas", "show", "99.999.99.99", expect=2)
    assert "no commune 99.999.99.99" in out


def test_report_formats(tawqi) -> None:
    national = json.loads(tawqi("quotas", "report", "--year", "2026", "--format", "json"))
    assert national["tier_counts"] == {"large": 104, "medium": 205, "small": 1194}
    assert national["totals"]["allotted"] == 5147
    rows = list(csv.reader(io.StringIO(tawqi("quotas", "report", "--province", "01.051",
                                             "--year", "2026", "--format", "csv"))))
    assert rows[0][0] == "entity" and rows[-1][0] == "TOTAL"
    table = tawqi("quotas", "report", "--region", "12", "--year", "2026")
    assert "communes per tier" in table


def test_partnership_and_billing(tawqi) -> None:
    tawqi("quotas", "partnership", "01.051.01.03", "--year", "2026", "--count", "2",
          "--unit-price", "850", "--signed-on", "2026-02-10", "--reference", "CONV-1")
    billed = json.loads(tawqi("quotas", "billing", "--year", "2026", "--format", "json"))
    assert billed["total_mad"] == "1700.00"
    assert billed["lines"][0]["commune_code"] == "01.051.01.03"
    tawqi("quotas", "partnership", "01.051.01.03", "--year", "2026", "--count", "2",
          "--unit-price", "many", "--signed-on", "2026-02-10", expect=2)


def test_audit_verify_names_the_tampered_event(tawqi, tmp_path: Path) -> None:
    assert "intact" in tawqi("audit", "verify")
    with sqlite3.connect(tmp_path / "tawqi.db") as conn:
        conn.execute("UPDATE audit_event SET actor = 'someone else' WHERE seq = 2")
    out = tawqi("audit", "verify", expect=1)
    assert "BROKEN at event 2" in out

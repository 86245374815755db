"""`engage export audit`: UTF-8 with a BOM, a header, one row per audit entry, UTC times."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from engage.commands.export import EXPORTS
from storage.models import AuditEntry
from tests.cli.support import fetch, run_cli, setup_site

REASON = "患者住院，暂停提醒 (hospitalised, \"pause\")"


pytestmark = pytest.mark.usefixtures("cli_database")


def test_audit_export_round_trips_chinese_text_with_a_bom(
        db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    setup_site(capsys)
    assert run_cli(capsys, "patient", "enroll", "BJ01-001", "--site", "BJ01", "--baseline",
                   "2026-03-02", "--dose-time", "08:00", "--language", "zh").status == 0
    assert run_cli(capsys, "patient", "pause", "BJ01-001", "--reason", REASON).status == 0
    entries = [e for (e,) in fetch(db_url, select(AuditEntry).order_by(AuditEntry.id))]
    out = tmp_path / "audit.csv"

    outcome = run_cli(capsys, "export", "audit", "--out", str(out), "--json")
    assert outcome.status == 0, outcome.err
    assert json.loads(outcome.out) == {"kind": "audit", "rows": len(entries), "out": str(out)}
    raw = out.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    assert raw.count(b"\xef\xbb\xbf") == 1
    rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"), newline="")))
    assert list(rows[0]) == list(EXPORTS["audit"].columns)
    assert [int(r["id"]) for r in rows] == [e.id for e in entries]
    paused = rows[-1]
    assert (paused["entity_id"], paused["field"], paused["old_value"], paused["new_value"],
            paused["reason"], paused["actor_kind"]) == ("BJ01-001", "status", "active",
                                                        "paused", REASON, "cli")
    for row, entry in zip(rows, entries, strict=True):
        assert row["at_utc"].endswith("Z")
        assert datetime.fromisoformat(row["at_utc"]) == entry.at
        assert datetime.fromisoformat(row["at_utc"]).tzinfo == UTC
    assert not list(tmp_path.glob("*.partial"))
    # Taking the trail out is itself on the record.
    last = fetch(db_url, select(AuditEntry).order_by(AuditEntry.id.desc()).limit(1))[0][0]
    assert (last.action, last.entity_id) == ("export", "audit")


def test_export_to_a_missing_directory_fails_cleanly(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    outcome = run_cli(capsys, "export", "audit", "--out", str(tmp_path / "no" / "a.csv"))
    assert outcome.status != 0
    assert "no such directory" in outcome.err


def test_empty_trail_exports_only_the_header(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "audit.csv"
    assert run_cli(capsys, "export", "audit", "--out", str(out)).status == 0
    assert out.read_text(encoding="utf-8-sig").splitlines() == [
        ",".join(EXPORTS["audit"].columns)]


def test_text_cells_never_start_a_spreadsheet_formula() -> None:
    from engage.commands.export import cell

    assert cell("=HYPERLINK(\"http://x\")") == "'=HYPERLINK(\"http://x\")"
    assert cell("@SUM(A1)") == "'@SUM(A1)"
    assert cell("-3 days") == "'-3 days"
    assert cell(-3) == "-3"
    assert cell("发烧 38.6") == "发烧 38.6"

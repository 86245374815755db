"""`engage export doses|symptoms|alerts|messages`: BOM, header, one row per record, Chinese."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from engage.commands.export import EXPORTS
from storage import outbox
from storage.db import Database
from storage.models import InboundMessage
from tests.cli.support import run_cli
from tests.factories import (
    T0,
    alert_row,
    dose_row,
    patient_row,
    report_row,
    site_row,
    staff_row,
)

CHINESE = "头痛，有点恶心 \"昨晚\"，体温 37.2"


@pytest.fixture(autouse=True)
def _database(db_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ENGAGE_DATABASE_URL", db_url)
    monkeypatch.chdir(tmp_path)


async def _seed(url: str) -> None:
    db = Database(url)
    try:
        async with db.write() as session:
            await site_row(session, "BJ01")
            await site_row(session, "NY01", tz="America/New_York")
            coordinator = await staff_row(session, "BJ01", "coordinator")
            a = await patient_row(session, "BJ01-001", "BJ01", phone="+8613800000001")
            b = await patient_row(session, "NY01-001", "NY01", tz="America/New_York")
            await dose_row(session, a, date(2026, 3, 1), "taken")
            await dose_row(session, a, date(2026, 3, 2), "skipped", skip_reason="胃不舒服")
            await dose_row(session, b, date(2026, 3, 1), "no_response", late_answer="taken")
            await report_row(session, a, CHINESE)
            await report_row(session, b, "fever 38.5", tier="same_day",
                             at=T0 + timedelta(hours=1))
            alert = await alert_row(session, a, summary=CHINESE)
            alert.status, alert.acknowledged_at = "acknowledged", T0 + timedelta(minutes=5)
            alert.acknowledged_by = coordinator.id
            await outbox.enqueue(session, key="dose:reminder:1", channel="sms",
                                 address="+8613800000001", template_id="dose.reminder",
                                 template_version="abc", language="zh", body="请服用研究用药",
                                 due_at=T0, now=T0, patient_id=a.id)
            await outbox.enqueue(session, key="digest:BJ01:2026-03-02:1:chart",
                                 channel="telegram", address="1", template_id="digest.chart",
                                 template_version="v", language="en", body="chart",
                                 due_at=T0, now=T0, image=b"\x89PNG", staff_id=coordinator.id)
            session.add(InboundMessage(channel="sms", external_id="SM1",
                                       sender="+8613800000001", patient_id=a.id, text=CHINESE,
                                       payload={}, received_at=T0 + timedelta(minutes=2)))
    finally:
        await db.dispose()


def _export(capsys: pytest.CaptureFixture[str], tmp_path: Path,
            kind: str) -> list[dict[str, str]]:
    out = tmp_path / f"{kind}.csv"
    outcome = run_cli(capsys, "export", kind, "--out", str(out), "--json")
    assert outcome.status == 0, outcome.err
    raw = out.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    assert raw.count(b"\xef\xbb\xbf") == 1
    text = raw.decode("utf-8-sig")
    header = next(csv.reader(io.StringIO(text, newline="")))
    assert tuple(header) == EXPORTS[kind].columns
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    assert json.loads(outcome.out)["rows"] == len(rows)
    return rows


def test_doses_export_one_row_per_dose_with_utc_and_local_times(
        db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    asyncio.run(_seed(db_url))
    rows = _export(capsys, tmp_path, "doses")
    assert [(r["subject_id"], r["site"], r["local_date"], r["state"], r["day_status"])
            for r in rows] == [("BJ01-001", "BJ01", "2026-03-01", "taken", "taken"),
                               ("BJ01-001", "BJ01", "2026-03-02", "skipped", "skipped"),
                               ("NY01-001", "NY01", "2026-03-01", "no_response",
                                "no_response")]
    first = rows[0]
    assert first["due_at_utc"] == "2026-03-01T01:00:00Z"
    assert first["due_at_local"] == "2026-03-01T09:00:00+08:00"
    assert rows[1]["skip_reason"] == "胃不舒服"
    assert rows[2]["due_at_local"] == "2026-03-01T09:00:00-05:00"
    assert rows[2]["late_answer"] == "taken"


def test_symptoms_export_round_trips_chinese_text(
        db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    asyncio.run(_seed(db_url))
    rows = _export(capsys, tmp_path, "symptoms")
    assert [(r["subject_id"], r["tier"]) for r in rows] == [("BJ01-001", "routine"),
                                                            ("NY01-001", "same_day")]
    assert rows[0]["text"] == CHINESE
    assert rows[0]["reasons"] == "头痛"
    assert datetime.fromisoformat(rows[0]["received_at_utc"]) == T0
    assert rows[0]["received_at_local"] == "2026-03-02T08:00:00+08:00"


def test_alerts_export_has_who_acknowledged_and_local_time(
        db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    asyncio.run(_seed(db_url))
    rows = _export(capsys, tmp_path, "alerts")
    assert len(rows) == 1
    row = rows[0]
    assert (row["subject_id"], row["site"], row["status"], row["summary"],
            row["acknowledged_by_role"]) == ("BJ01-001", "BJ01", "acknowledged", CHINESE,
                                             "coordinator")
    assert datetime.fromisoformat(row["acknowledged_at_utc"]) == T0 + timedelta(minutes=5)
    assert datetime.fromisoformat(row["received_at_local"]).utcoffset() == timedelta(hours=8)


def test_messages_export_has_both_directions_and_no_addresses(
        db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    asyncio.run(_seed(db_url))
    rows = _export(capsys, tmp_path, "messages")
    assert [(r["direction"], r["subject_id"], r["site"], r["channel"]) for r in rows] == [
        ("out", "BJ01-001", "BJ01", "sms"), ("out", "", "BJ01", "telegram"),
        ("in", "BJ01-001", "BJ01", "sms")]
    assert rows[0]["text"] == "请服用研究用药"
    assert rows[2]["text"] == CHINESE
    assert rows[1]["has_image"] == "true"
    assert rows[0]["has_image"] == "false"
    assert datetime.fromisoformat(rows[2]["at_utc"]).astimezone(UTC) == T0 + timedelta(
        minutes=2)
    raw = (tmp_path / "messages.csv").read_text(encoding="utf-8-sig")
    assert "+8613800000001" not in raw  # staff and data managers see subject ids only


def test_empty_exports_have_only_the_header(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for kind in ("doses", "symptoms", "alerts", "messages"):
        assert _export(capsys, tmp_path, kind) == []

"""Adherence: day statuses, the three figures, the flags; `engage report adherence` gives the
domain's numbers (JSON) and a readable table; `engage tick --at` runs one pass."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from engage.cli import main
from storage.db import Database
from storage.models import DoseRecord, OutboundMessage, Patient, Site
from study.adherence import adherence_report
from trial.adherence import Day, DayRecord, count, days_between, flags, in_band, summarize
from trial.protocol import load_protocol

START = date(2026, 3, 2)


@dataclass
class FakeDose:
    state: str
    late_answer: str | None = None


def records(*statuses: str) -> list[DayRecord]:
    return [DayRecord(START + timedelta(days=i), Day(s)) for i, s in enumerate(statuses)]


def test_figures_count_what_they_say() -> None:
    doses = {START + timedelta(days=i): FakeDose(s) for i, s in enumerate(
        ["taken", "taken", "late", "skipped", "missed", "no_response", "no_response",
         "cancelled", "reminded"])}
    doses[START + timedelta(days=6)] = FakeDose("no_response", late_answer="taken")
    days = days_between(doses, START, START + timedelta(days=10))  # day 9 has no dose
    c = count(days)
    assert (c.scheduled, c.taken, c.late, c.skipped, c.missed, c.no_response) == (7, 2, 1, 1, 1, 2)
    assert (c.not_scheduled, c.open, c.answered, c.confirmed_after_cutoff) == (2, 1, 5, 1)
    assert c.confirmed_adherence == pytest.approx(4 / 7)  # taken + late + confirmed late
    assert c.worst_case == pytest.approx(3 / 7)  # no-response counted as missed
    assert c.response_rate == pytest.approx(5 / 7)
    assert count([]).confirmed_adherence is None


def test_band() -> None:
    assert in_band(0.8)
    assert in_band(1.2)
    assert not in_band(0.79)
    assert not in_band(None)


def test_low_week_flag_over_any_seven_consecutive_days() -> None:
    good = ["taken"] * 10
    assert not flags(records(*good)).any
    # 5 of 7 taken = 71 % in the window starting on day 3; no two missing days in a row.
    mixed = ["taken"] * 3 + ["taken", "no_response", "taken", "skipped", "taken", "taken",
                             "taken"] + ["taken"] * 4
    result = flags(records(*mixed))
    assert result.names == ("low_7d",)
    assert result.low_week == START


def test_missing_run_ignores_unscheduled_days_but_breaks_on_an_answer() -> None:
    run = flags(records(*(["taken"] * 10 + ["missed", "not_scheduled", "no_response"]
                          + ["taken"] * 20)))
    assert "missing_run" in run.names
    assert run.missing_run == START + timedelta(days=10)
    broken = flags(records(*(["taken"] * 10 + ["missed", "skipped", "no_response"]
                             + ["taken"] * 20)))
    assert "missing_run" not in broken.names


def test_summarize_is_counts_and_flags() -> None:
    summary = summarize(records("taken", "missed", "missed"))
    assert summary.counts.scheduled == 3
    assert set(summary.flags.names) == {"low_7d", "missing_run"}


# --- the command line over a seeded database ---------------------------------------------------

SCRIPT = {  # subject -> (site, day statuses from START)
    "A-001": ("S01", ["taken"] * 14),
    "A-002": ("S01", ["taken", "late", "skipped", "no_response", "no_response"] + ["taken"] * 9),
    "B-001": ("S02", ["missed", "taken", "cancelled"] + ["taken"] * 11),
}
AT = datetime(2026, 3, 16, 12, 0, tzinfo=UTC)


async def _seed(url: str) -> None:
    db = Database(url)
    now = datetime(2026, 3, 1, tzinfo=UTC)
    try:
        async with db.write() as session:
            for site in ("S01", "S02"):
                session.add(Site(id=site, name=site, tz="Asia/Shanghai", created_at=now))
            await session.flush()
            for n, (subject, (site, statuses)) in enumerate(SCRIPT.items()):
                patient = Patient(subject_id=subject, site_id=site, baseline=START,
                                  dose_time="08:00", tz="Asia/Shanghai", language="zh",
                                  telegram_id=100 + n, created_at=now)
                session.add(patient)
                await session.flush()
                for i, state in enumerate(statuses):
                    due = datetime(2026, 3, 2, 0, 0, tzinfo=UTC) + timedelta(days=i)
                    session.add(DoseRecord(
                        patient_id=patient.id, local_date=START + timedelta(days=i), due_at=due,
                        follow_up_at=due + timedelta(hours=1), cutoff_at=due + timedelta(hours=12),
                        state=state, snoozes=0,
                        late_answer="taken" if (subject, i) == ("A-002", 4) else None))
    finally:
        await db.dispose()


async def _domain(url: str, site: str | None) -> dict[str, object]:
    db = Database(url)
    try:
        async with db.read() as session:
            report = await adherence_report(session, load_protocol(), now=AT, site_id=site)
        return report.as_dict()
    finally:
        await db.dispose()


@pytest.fixture
def seeded(db_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    monkeypatch.setenv("ENGAGE_DATABASE_URL", db_url)
    monkeypatch.chdir(tmp_path)  # no stray .env
    asyncio.run(_seed(db_url))
    return db_url


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    capsys.readouterr()
    status = main(list(argv))
    out, err = capsys.readouterr()
    assert status == 0, err
    return out


@pytest.mark.parametrize("site", [None, "S01"])
def test_report_json_equals_the_domain_functions(seeded: str, site: str | None,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["report", "adherence", "--json", "--at", AT.isoformat()]
    if site:
        argv += ["--site", site]
    data = json.loads(_run(capsys, *argv))
    assert data == json.loads(json.dumps(asyncio.run(_domain(seeded, site)), default=str))
    patients = {p["subject_id"]: p for p in data["patients"]}
    assert set(patients) == ({"A-001", "A-002"} if site else set(SCRIPT))
    a2 = patients["A-002"]
    assert (a2["scheduled"], a2["taken"], a2["late"], a2["skipped"], a2["no_response"]) == (
        14, 10, 1, 1, 2)
    assert a2["confirmed_adherence"] == round(12 / 14, 4)  # one confirmation after the cut-off
    assert a2["worst_case"] == round(11 / 14, 4)
    assert a2["response_rate"] == round(12 / 14, 4)
    assert a2["flags"] == ["low_7d", "missing_run"]
    assert patients["A-001"]["flags"] == []
    if not site:
        b1 = patients["B-001"]
        # Cancelled day 2, and today (the 16th) with no dose row: both not scheduled.
        assert (b1["scheduled"], b1["missed"], b1["not_scheduled"]) == (13, 1, 2)
        s01 = next(s for s in data["sites"] if s["site"] == "S01")
        assert (s01["scheduled"], s01["flagged"]) == (28, 1)


def test_report_text_is_a_table(seeded: str, capsys: pytest.CaptureFixture[str]) -> None:
    out = _run(capsys, "report", "adherence", "--at", AT.isoformat())
    lines = out.splitlines()
    assert lines[0].split() == ["subject", "site", "sched", "taken", "late", "skip", "missed",
                                "no-resp", "confirmed", "response", "worst", "flags"]
    a2 = next(line for line in lines if line.startswith("A-002"))
    assert a2.split() == ["A-002", "S01", "14", "10", "1", "1", "0", "2", "86%", "86%", "79%",
                          "low_7d,missing_run"]
    assert any(line.startswith("ALL") and "S02" in line for line in lines)


def test_report_unknown_site_is_an_error(seeded: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "adherence", "--site", "NOPE"]) == 2
    assert "no site NOPE" in capsys.readouterr().err


def test_tick_at_an_instant_plans_that_instant(db_url: str, monkeypatch: pytest.MonkeyPatch,
                                               tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("ENGAGE_DATABASE_URL", db_url)
    monkeypatch.chdir(tmp_path)

    async def seed() -> None:
        db = Database(db_url)
        now = datetime(2026, 3, 1, tzinfo=UTC)
        try:
            async with db.write() as session:
                session.add(Site(id="S01", name="S01", tz="Asia/Shanghai", created_at=now))
                await session.flush()
                session.add(Patient(subject_id="P1", site_id="S01", baseline=START,
                                    dose_time="08:00", tz="Asia/Shanghai", language="en",
                                    telegram_id=7, created_at=now))
        finally:
            await db.dispose()

    asyncio.run(seed())
    data = json.loads(_run(capsys, "tick", "--at", "2026-03-02T08:00:00+08:00", "--json"))
    assert data["at"] == "2026-03-02T00:00:00+00:00"
    assert data["planned"]["doses"] == 3  # today's and tomorrow's rows, today's reminder
    assert data["dispatched"] is None  # no channel configured
    keys = asyncio.run(_keys(db_url))
    assert len(keys) == 1
    assert keys[0].startswith("dose:reminder:")
    text = _run(capsys, "tick", "--at", "2026-03-02T00:00:00")  # no offset: UTC; idempotent
    assert "doses: 0" in text
    assert main(["tick", "--at", "yesterday"]) == 2


async def _keys(url: str) -> list[str]:
    db = Database(url)
    try:
        async with db.read() as session:
            assert (await session.execute(select(func.count()).select_from(DoseRecord))
                    ).scalar() == 2
            return list((await session.execute(select(OutboundMessage.dedupe_key))).scalars())
    finally:
        await db.dispose()

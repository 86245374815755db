"""`engage visit list|move|done` and the staff commands `/move` and `/done`, on both backends."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from bot import staff_visits
from bot.staff import STAFF_COMMANDS
from bot.staff_visits import done, move
from messages import catalogue
from storage.db import Database
from storage.models import AuditEntry, Visit
from study.replies import Reply
from tests.cli.support import fetch, run_cli, setup_site
from tests.study import visits_support as support
from trial.protocol import Protocol

T0 = datetime(2026, 2, 20, 2, 0, tzinfo=UTC)
NOW = datetime(2026, 3, 30, 4, 0, tzinfo=UTC)  # Mon 12:00 in Beijing, W4's target day


def texts(replies: list[Reply]) -> list[str]:
    """Every reply rendered in both languages (a missing text or placeholder fails)."""
    return [catalogue.render(r.message_id, lang, **r.params) for r in replies
            for lang in ("en", "zh")]


async def test_staff_move_and_done(db: Database, protocol: Protocol) -> None:
    await support.site(db, T0)
    await support.site(db, T0, "SH02")
    await support.patient(db, protocol, T0, "BJ01-001", baseline=date(2026, 3, 2))
    nurse = await support.staff(db, T0, telegram_id=900)
    monitor = await support.staff(db, T0, role="monitor", telegram_id=901)
    other = await support.staff(db, T0, site_id="SH02", telegram_id=902)
    admin = await support.staff(db, T0, site_id=None, role="admin", telegram_id=903)

    async def say(staff: object, fn: object, args: str) -> list[Reply]:
        async with db.write() as session:
            replies = await fn(session, protocol, staff, args, now=NOW)  # type: ignore[operator]
        texts(replies)
        return list(replies)

    def ids(replies: list[Reply]) -> list[str]:
        return [r.message_id for r in replies]

    assert ids(await say(nurse, move, "")) == ["visit.move_usage"]
    assert ids(await say(nurse, move, "BJ01-001 W4 2026-04-01")) == [
        "visit.error_no_reason", "visit.move_usage"]
    assert ids(await say(nurse, move, "BJ01-001 W4 1/4/2026 slot")) == ["visit.error_bad_date"]
    assert ids(await say(nurse, move, "BJ01-001 W99 2026-04-01 slot")) == [
        "visit.error_no_visit"]
    assert ids(await say(monitor, move, "BJ01-001 W4 2026-04-01 slot")) == [
        "visit.error_not_allowed"]
    assert ids(await say(other, move, "BJ01-001 W4 2026-04-01 slot")) == [
        "visit.error_no_patient"]
    [moved] = await say(nurse, move, "BJ01-001 w4 2026-04-06 patient in hospital, will call")
    assert moved.message_id == "visit.moved_out_of_window"
    assert "OUTSIDE its window 2026-03-27 to 2026-04-02" in catalogue.render(
        moved.message_id, "en", **moved.params)
    [moved] = await say(admin, move, "BJ01-001 W4 2026-04-01 earlier slot")
    assert moved.message_id == "visit.moved"

    assert ids(await say(nurse, done, "BJ01-001")) == ["visit.done_usage"]
    assert ids(await say(nurse, done, "BJ01-001 W4 2026-04-02")) == ["visit.error_future_done"]
    [marked] = await say(nurse, done, "BJ01-001 W4")
    assert (marked.message_id, marked.params["date"]) == ("visit.marked_done", "2026-03-30")
    assert ids(await say(nurse, done, "BJ01-001 W4")) == ["visit.error_already_done"]
    [late] = await say(nurse, done, "BJ01-001 W0 2026-03-05")
    assert late.message_id == "visit.marked_done_out_of_window"

    async with db.read() as session:
        rows = {v.name: v for v in (await session.execute(select(Visit))).scalars()}
        trail = (await session.execute(select(AuditEntry).where(
            AuditEntry.entity == "visits", AuditEntry.field == "scheduled_date")
            .order_by(AuditEntry.id))).scalars().all()
    assert (rows["W4"].status, rows["W4"].done_date, rows["W4"].revision) == (
        "done", date(2026, 3, 30), 2)
    assert [(e.actor_kind, e.actor_id, e.old_value, e.new_value, e.reason) for e in trail] == [
        ("staff", str(nurse.id), "2026-03-30", "2026-04-06", "patient in hospital, will call"),
        ("staff", str(admin.id), "2026-04-06", "2026-04-01", "earlier slot")]


def test_staff_commands_are_registered() -> None:
    assert staff_visits.router.commands == {"move": move, "done": done}
    assert STAFF_COMMANDS.get("move") is move
    assert STAFF_COMMANDS.get("done") is done


@pytest.fixture
def _cli_database(db_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ENGAGE_DATABASE_URL", db_url)
    monkeypatch.chdir(tmp_path)  # no stray .env


@pytest.mark.usefixtures("_cli_database")
def test_cli_list_move_done(db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    setup_site(capsys)
    outcome = run_cli(capsys, "patient", "enroll", "BJ01-001", "--site", "BJ01", "--baseline",
                      "2025-01-06", "--dose-time", "8:00", "--language", "zh")
    assert outcome.status == 0, outcome.err

    outcome = run_cli(capsys, "visit", "move", "BJ01-001", "W4", "2025-02-10", "--reason",
                      "patient abroad", "--json")
    assert outcome.status == 0, outcome.err
    assert json.loads(outcome.out) == {
        "subject_id": "BJ01-001", "visit": "W4", "old_date": "2025-02-03",
        "new_date": "2025-02-10", "window_start": "2025-01-31", "window_end": "2025-02-06",
        "out_of_window": True, "cancelled_notices": 0}
    outcome = run_cli(capsys, "visit", "move", "BJ01-001", "W8", "2025-03-01", "--reason", " ")
    assert (outcome.status, outcome.err) == (2, "error: reason: a reason is required\n")
    outcome = run_cli(capsys, "visit", "move", "BJ01-001", "W8", "soon", "--reason", "x")
    assert outcome.status == 2
    assert "soon is not a date" in outcome.err
    outcome = run_cli(capsys, "visit", "done", "BJ01-001", "W0", "--date", "2025-01-06")
    assert outcome.status == 0, outcome.err
    assert outcome.out == "BJ01-001 W0 done on 2025-01-06\n"
    outcome = run_cli(capsys, "visit", "done", "BJ01-001", "W4", "--date", "2025-02-10")
    assert "WARNING: outside the window 2025-01-31 to 2025-02-06" in outcome.out

    outcome = run_cli(capsys, "visit", "list", "BJ01-001")
    assert outcome.status == 0, outcome.err
    lines = outcome.out.splitlines()
    assert lines[0] == "visits of BJ01-001"
    assert len(lines) == 2 + 14
    w4 = next(line for line in lines if line.startswith("W4 "))
    assert w4.split() == ["W4", "2025-02-03", "2025-01-31..2025-02-06", "2025-02-10", "done",
                          "2025-02-10", "OUT", "OF", "WINDOW,", "moved", "x1"]
    data = json.loads(run_cli(capsys, "visit", "list", "BJ01-001", "--json").out)
    assert [v["visit"] for v in data["visits"]][:3] == ["SCR", "W0", "W4"]
    assert data["visits"][-1] == {
        "visit": "W48", "target": "2025-12-08", "window_start": "2025-12-01",
        "window_end": "2025-12-15", "scheduled": "2025-12-08", "status": "planned",
        "done_date": None, "out_of_window": False, "revision": 0}
    outcome = run_cli(capsys, "visit", "list", "XX-1")
    assert (outcome.status, outcome.err) == (2, "error: No patient XX-1.\n")
    queries = fetch(db_url, select(AuditEntry.field).where(AuditEntry.action == "query"))
    assert [q[0] for q in queries] == ["visit list", "visit list"]

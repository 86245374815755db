"""The figures of `/adherence` equal those of `engage report adherence --json`."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from pathlib import Path

import pytest

from bot.staff import STAFF_COMMANDS
from storage.db import Database
from tests.bot.test_staff_queries import NOW, TODAY, seed_site
from tests.cli.support import run_cli
from tests.factories import staff_row
from trial.protocol import Protocol


@pytest.fixture(autouse=True)
def _database(db_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ENGAGE_DATABASE_URL", db_url)
    monkeypatch.chdir(tmp_path)


async def _bot_rows(url: str, protocol: Protocol) -> dict[str, list[str]]:
    db = Database(url)
    try:
        await seed_site(db, "BJ01", 12)
        async with db.write() as session:
            staff = await staff_row(session, "BJ01", "coordinator")
            replies = await STAFF_COMMANDS.commands["adherence"](session, protocol, staff, "",
                                                                 now=NOW)
    finally:
        await db.dispose()
    rows = {}
    for line in str(replies[0].params["body"]).split("\n"):
        if line.startswith("BJ01-"):
            subject, week, month = line.split(" ⚑ ")[0].split(" · ")
            rows[subject] = week.split("/") + month.split("/")
    return rows


def _report(capsys: pytest.CaptureFixture[str], days: int) -> dict[str, list[str]]:
    start = (TODAY - timedelta(days=days - 1)).isoformat()
    outcome = run_cli(capsys, "report", "adherence", "--site", "BJ01", "--from", start,
                      "--at", NOW.isoformat(), "--json")
    assert outcome.status == 0, outcome.err
    figures = {}
    for p in json.loads(outcome.out)["patients"]:
        figures[p["subject_id"]] = [
            "–" if p[name] is None else str(round(p[name] * 100))
            for name in ("confirmed_adherence", "response_rate", "worst_case")]
    return figures


def test_bot_figures_equal_the_cli_report(db_url: str, protocol: Protocol,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    bot = asyncio.run(_bot_rows(db_url, protocol))
    week, month = _report(capsys, 7), _report(capsys, 28)
    assert len(bot) == 12
    assert set(bot) == set(week) == set(month)
    for subject, figures in bot.items():
        assert figures == week[subject] + month[subject], subject
    # The seeded states make the figures differ between patients and windows.
    assert len({tuple(f) for f in bot.values()}) > 1

"""`engage oncall set|end|show` and `engage alert sae-reported` (issue 17): the rota is set and
shown from the command line, every change audited with its reason, and documented."""

from __future__ import annotations

import asyncio
import json

import pytest
from sqlalchemy import select

from engage.clock import SystemClock
from storage.db import Database
from storage.models import Alert, AuditEntry, OnCallRule, Patient
from study import alerts
from tests import ROOT as PROJECT_ROOT
from tests.cli.support import fetch, run_cli
from trial.protocol import Tier, load_protocol

README = PROJECT_ROOT / "README.md"
SUNDAY_2AM = "2026-03-08T02:00+08:00"
MONDAY_10AM = "2026-03-09T10:00+08:00"

# The CLI reads the wall clock (SystemClock): so do tests of what it did.
WALL_CLOCK = SystemClock()


@pytest.fixture(autouse=True)
def _study(cli_site: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(capsys, "staff", "add", "--site", "BJ01", "--role", "investigator",
                   "--name", "Li", "--phone", "+8613800000017").status == 0


def _show(capsys: pytest.CaptureFixture[str], at: str) -> dict[str, object]:
    outcome = run_cli(capsys, "oncall", "show", "BJ01", "--at", at, "--json")
    assert outcome.status == 0, outcome.err
    return dict(json.loads(outcome.out))


def test_the_rota_is_set_shown_and_ended_from_the_cli(
        db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    # No rota of its own: the protocol's default (office hours coordinator, else investigator).
    shown = _show(capsys, SUNDAY_2AM)
    assert (shown["source"], shown["on_call"]) == ("protocol", "investigator")
    assert _show(capsys, MONDAY_10AM)["on_call"] == "coordinator"

    assert run_cli(capsys, "oncall", "set", "BJ01", "coordinator", "--days", "weekdays",
                   "--hours", "08:00-18:00", "--reason", "rota agreed").status == 0
    night = run_cli(capsys, "oncall", "set", "BJ01", "1", "--hours", "18:00-08:00")
    assert night.status == 0, night.err
    assert "staff #1" in night.out
    shown = _show(capsys, SUNDAY_2AM)
    assert (shown["source"], shown["on_call"], shown["at_utc"]) == (
        "site", "staff:1", "2026-03-07 18:00")
    assert _show(capsys, MONDAY_10AM)["on_call"] == "coordinator"
    text = run_cli(capsys, "oncall", "show", "BJ01", "--at", SUNDAY_2AM).out
    assert "on call staff:1" in text
    assert "18:00-08:00" in text

    # A holiday cover over everything, in local dates.
    assert run_cli(capsys, "oncall", "set", "BJ01", "pi", "--from", "2026-03-09",
                   "--to", "2026-03-10").status == 0
    assert _show(capsys, MONDAY_10AM)["on_call"] == "pi"

    refused = run_cli(capsys, "oncall", "set", "BJ01", "nobody")
    assert refused.status != 0
    assert "neither a role" in refused.err
    assert run_cli(capsys, "oncall", "set", "BJ01", "pi", "--hours", "8-18").status != 0

    assert run_cli(capsys, "oncall", "end", "BJ01", "--reason", "new rota").status == 0
    assert _show(capsys, SUNDAY_2AM)["source"] == "protocol"
    rules = fetch(db_url, select(OnCallRule.id, OnCallRule.ended_at))
    assert len(rules) == 3
    assert all(ended is not None for _, ended in rules)  # ended, never deleted
    trail = fetch(db_url, select(AuditEntry.action, AuditEntry.reason).where(
        AuditEntry.entity == "oncall_rules"))
    assert ("create", "rota agreed") in trail
    assert ("update", "new rota") in trail
    assert all(reason for _, reason in trail)


def test_sae_reported_from_the_cli_stops_the_reminders(
        db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(capsys, "patient", "enroll", "BJ01-001", "--site", "BJ01", "--baseline",
                   "2026-03-02", "--dose-time", "08:00", "--language", "zh").status == 0

    async def open_sae() -> int:
        database = Database(db_url)
        try:
            async with database.write() as session:
                patient = (await session.execute(select(Patient))).scalar_one()
                now = WALL_CLOCK.now()
                alert = await alerts.open_alert(
                    session, load_protocol(), site_id="BJ01", patient=patient, kind="symptom",
                    tier=Tier.SAME_DAY, now=now, received_at=now, summary="hospital",
                    possible_sae=True)
                return alert.id
        finally:
            await database.dispose()

    alert_id = asyncio.run(open_sae())
    done = run_cli(capsys, "alert", "sae-reported", str(alert_id), "--note", "faxed", "--json")
    assert done.status == 0, done.err
    assert json.loads(done.out)["new"] is True
    again = run_cli(capsys, "alert", "sae-reported", str(alert_id))
    assert "already recorded" in again.out
    assert run_cli(capsys, "alert", "sae-reported", "999").status != 0
    [(reported_at, reminder)] = fetch(db_url, select(Alert.sae_reported_at,
                                                     Alert.sae_next_reminder_at))
    assert (reported_at is not None, reminder) == (True, None)
    [(actor_kind, reason)] = fetch(db_url, select(AuditEntry.actor_kind, AuditEntry.reason)
                                   .where(AuditEntry.field == "sae_reported_at"))
    assert (actor_kind, reason) == ("cli", "reported to sponsor: faxed")


def test_the_readme_documents_the_commands() -> None:
    readme = README.read_text(encoding="utf-8")
    for command in ("engage oncall set", "engage oncall show", "engage oncall end",
                    "engage alert sae-reported", "/oncall", "/sae", "/reviewed", "ACK 12"):
        assert command in readme, command

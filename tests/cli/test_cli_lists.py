"""What is there, through the admin CLI: sites, staff, patients (one in full) and alerts, each as
a table and as JSON, each documented in the README."""

from __future__ import annotations

import asyncio
import json

import pytest
from sqlalchemy import select

from engage.clock import SystemClock
from storage.db import Database
from storage.models import AuditEntry, Patient
from study import alerts
from tests import ROOT as PROJECT_ROOT
from tests.cli.support import fetch, run_cli, setup_site
from trial import schedule
from trial.protocol import Tier, load_protocol

README = PROJECT_ROOT / "README.md"
LISTS = [["site", "list"], ["staff", "list"], ["staff", "list", "--site", "BJ01"],
         ["patient", "list"], ["patient", "list", "--site", "BJ01", "--status", "active"],
         ["patient", "show", "BJ01-001"], ["alert", "list"], ["alert", "list", "--open"],
         ["alert", "list", "--site", "BJ01"]]

# The CLI reads the wall clock (SystemClock): so do tests of what it did.
WALL_CLOCK = SystemClock()


@pytest.fixture(autouse=True)
def _study(cli_site: None, db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    setup_site(capsys, "SH02")
    today = schedule.local_date(WALL_CLOCK.now(), "Asia/Shanghai").isoformat()
    for subject, site, phone in (("BJ01-001", "BJ01", "+8613812345678"),
                                 ("BJ01-002", "BJ01", None), ("SH02-001", "SH02", None)):
        extra = ["--phone", phone] if phone else []
        assert run_cli(capsys, "patient", "enroll", subject, "--site", site, "--baseline",
                       today, "--dose-time", "08:00", "--language", "zh", *extra).status == 0
    assert run_cli(capsys, "patient", "pause", "BJ01-002", "--reason", "hospital").status == 0
    assert run_cli(capsys, "staff", "add", "--site", "BJ01", "--role", "coordinator", "--name",
                   "王", "--telegram-id", "4242").status == 0
    assert run_cli(capsys, "staff", "add", "--role", "admin", "--name", "Admin",
                   "--telegram-id", "4343").status == 0

    async def alert() -> None:
        database = Database(db_url)
        try:
            async with database.write() as session:
                patient = (await session.execute(select(Patient).where(
                    Patient.subject_id == "BJ01-001"))).scalar_one()
                now = WALL_CLOCK.now()
                await alerts.open_alert(session, load_protocol(), site_id="BJ01",
                                        patient=patient, kind="symptom", tier=Tier.SAME_DAY,
                                        now=now, received_at=now, summary="fever 38.6")
        finally:
            await database.dispose()

    asyncio.run(alert())


def _json(capsys: pytest.CaptureFixture[str], *argv: str) -> object:
    outcome = run_cli(capsys, *argv, "--json")
    assert outcome.status == 0, outcome.err
    return json.loads(outcome.out)


def test_sites_and_staff(capsys: pytest.CaptureFixture[str]) -> None:
    sites = _json(capsys, "site", "list")
    assert [(s["site"], s["patients"], s["active_patients"], s["staff"]) for s in sites] == [
        ("BJ01", 2, 1, 1), ("SH02", 1, 1, 0)]
    staff = _json(capsys, "staff", "list", "--site", "BJ01")
    assert [(m["role"], m["site"], m["active"], m["pageable"]) for m in staff] == [
        ("admin", None, True, True), ("coordinator", "BJ01", True, True)]
    assert len(_json(capsys, "staff", "list", "--site", "SH02")) == 1  # the admin only
    text = run_cli(capsys, "staff", "list").out
    assert text.splitlines()[0].split()[:3] == ["staff_id", "site", "role"]


def test_patients_by_site_and_status(db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    every = _json(capsys, "patient", "list")
    assert [p["subject_id"] for p in every] == ["BJ01-001", "BJ01-002", "SH02-001"]
    active = _json(capsys, "patient", "list", "--site", "BJ01", "--status", "active")
    assert [(p["subject_id"], p["route"], p["sms"]) for p in active] == [
        ("BJ01-001", "sms", "phone")]
    paused = _json(capsys, "patient", "list", "--status", "paused")
    assert [(p["subject_id"], p["route"]) for p in paused] == [("BJ01-002", None)]
    looks = fetch(db_url, select(AuditEntry.field, AuditEntry.entity_id).where(
        AuditEntry.action == "query"))
    assert ("patient list", "BJ01") in looks


def test_one_patient_in_full(capsys: pytest.CaptureFixture[str]) -> None:
    data = _json(capsys, "patient", "show", "BJ01-001")
    assert isinstance(data, dict)
    assert (data["status"], data["telegram"], data["sms_reachable"], data["route"]) == (
        "active", "not linked", True, "sms")
    assert data["next_dose"]["due_at_local"].endswith("+08:00")
    assert data["next_visit"]["visit"] in ("SCR", "W0")
    assert [(a["kind"], a["tier"], a["summary"]) for a in data["open_alerts"]] == [
        ("symptom", "same_day", "fever 38.6")]
    text = run_cli(capsys, "patient", "show", "BJ01-001").out
    assert "messages go by: sms" in text
    assert "open alerts: 1" in text
    missing = run_cli(capsys, "patient", "show", "XX-1")
    assert missing.status != 0
    assert "no patient XX-1" in missing.err


def test_alerts_by_site_and_open(capsys: pytest.CaptureFixture[str]) -> None:
    rows = _json(capsys, "alert", "list", "--open")
    assert [(a["subject_id"], a["status"]) for a in rows] == [("BJ01-001", "open")]
    assert _json(capsys, "alert", "list", "--site", "SH02") == []
    assert "no alerts" in run_cli(capsys, "alert", "list", "--site", "SH02").out


@pytest.mark.parametrize("argv", LISTS, ids=[" ".join(a) for a in LISTS])
def test_every_list_works_as_text_and_json_and_is_in_the_readme(
        capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    assert run_cli(capsys, *argv).status == 0
    _json(capsys, *argv)
    assert f"`engage {argv[0]} {argv[1]}" in README.read_text(encoding="utf-8")

"""Corrections through the admin CLI: a patient's dose time, phone, zone, baseline and link; staff
updates and deactivation; site updates; all audited with their reasons, and plans follow."""

from __future__ import annotations

import asyncio
import json
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from bot.conversation import Conversation, InboundEvent
from engage.clock import SimulatedClock, SystemClock
from scheduler.doses import plan_doses
from storage.db import Database
from storage.models import (
    Alert,
    AlertEvent,
    AuditEntry,
    DoseRecord,
    LinkCode,
    OutboundMessage,
    Patient,
    Staff,
    Visit,
)
from study import alerts, linking
from study.enrolment import hash_code
from tests.cli.support import counts, fetch, run_cli, setup_site
from trial import schedule
from trial.protocol import Protocol, Tier, load_protocol

OLD_PHONE, NEW_PHONE = "+8613812345678", "+8613987654321"

# The CLI reads the wall clock (SystemClock): so do tests of what it did.
WALL_CLOCK = SystemClock()


@pytest.fixture(autouse=True)
def _database(sqlite_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ENGAGE_DATABASE_URL", sqlite_url)
    monkeypatch.chdir(tmp_path)  # no stray .env


def today() -> date:
    return schedule.local_date(WALL_CLOCK.now(), "Asia/Shanghai")


def enrol(capsys: pytest.CaptureFixture[str], subject: str = "BJ01-001", *extra: str,
          baseline: date | None = None) -> dict[str, Any]:
    outcome = run_cli(capsys, "patient", "enroll", subject, "--site", "BJ01", "--baseline",
                      (baseline or today()).isoformat(), "--dose-time", "08:00", "--language",
                      "zh", "--json", *extra)
    assert outcome.status == 0, outcome.err
    return dict(json.loads(outcome.out))


def run(url: str, work: Any) -> Any:
    """Run `work(database)` against the test's database."""

    async def go() -> Any:
        database = Database(url)
        try:
            return await work(database)
        finally:
            await database.dispose()

    return asyncio.run(go())


def plan(url: str, protocol: Protocol, at: datetime) -> None:
    run(url, lambda database: plan_doses(database, protocol, at))


def link(url: str, protocol: Protocol, code: str, chat_id: int) -> linking.LinkOutcome:
    async def work(database: Database) -> linking.LinkOutcome:
        async with database.write() as session:
            result = await linking.link_chat(session, protocol, chat_id=chat_id, code=code,
                                             now=WALL_CLOCK.now())
            return result.outcome

    return run(url, work)


def doses(url: str) -> list[DoseRecord]:
    return [row[0] for row in fetch(url, select(DoseRecord).order_by(DoseRecord.local_date))]


def patient(url: str) -> Patient:
    return fetch(url, select(Patient))[0][0]


def audited(url: str, entity: str, entity_id: str) -> list[tuple[Any, ...]]:
    return [tuple(row) for row in fetch(url, select(
        AuditEntry.field, AuditEntry.old_value, AuditEntry.new_value, AuditEntry.reason)
        .where(AuditEntry.entity == entity, AuditEntry.entity_id == entity_id,
               AuditEntry.action == "update").order_by(AuditEntry.id))]


def test_a_patient_is_corrected_relinked_and_reminded_at_the_new_time_on_the_new_route(
        sqlite_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Acceptance 1: dose time, phone and zone change, the patient is relinked and a staff
    member deactivated; each is audited with its reason; the next reminder follows."""
    protocol = load_protocol()
    setup_site(capsys)
    code = enrol(capsys, "BJ01-001", "--phone", OLD_PHONE)["link_code"]
    assert link(sqlite_url, protocol, code, 770001) is linking.LinkOutcome.LINKED
    plan(sqlite_url, protocol, WALL_CLOCK.now())
    first = doses(sqlite_url)[0]
    plan(sqlite_url, protocol, first.due_at)  # the first dose is reminded (by Telegram)
    reminded = doses(sqlite_url)[0]
    assert reminded.state == "reminded"
    waiting = [d for d in doses(sqlite_url) if d.state == "scheduled"]
    assert waiting, "the next day's dose row exists a day ahead"

    outcome = run_cli(capsys, "patient", "update", "BJ01-001", "--dose-time", "9:30", "--tz",
                      "Asia/Urumqi", "--phone", "+86 139 8765 4321", "--reason",
                      "patient moved to Urumqi", "--json")
    assert outcome.status == 0, outcome.err
    data = json.loads(outcome.out)
    assert data["subject_id"] == "BJ01-001"
    assert data["changed"]["dose_time"] == {"old": "08:00", "new": "09:30"}
    assert data["changed"]["phone"]["new"] == NEW_PHONE
    assert data["changed"]["tz"] == {"old": "Asia/Shanghai", "new": "Asia/Urumqi"}

    after = {d.id: d for d in doses(sqlite_url)}
    assert after[reminded.id].due_at == reminded.due_at  # already reminded: keeps its times
    for dose in waiting:
        moved = after[dose.id]
        want = schedule.dose_times(protocol.reminders, dose.local_date, "09:30", "Asia/Urumqi")
        assert (moved.due_at, moved.follow_up_at, moved.cutoff_at) == (
            want.due_at, want.follow_up_at, want.cutoff_at)

    outcome = run_cli(capsys, "patient", "relink", "BJ01-001", "--reason", "lost phone",
                      "--json")
    assert outcome.status == 0, outcome.err
    relinked = json.loads(outcome.out)
    assert relinked["unlinked"] is True
    codes = [row[0] for row in fetch(sqlite_url, select(LinkCode.code_hash))]
    assert hash_code(relinked["link_code"]) in codes
    assert patient(sqlite_url).telegram_id is None

    # The next reminder: at the new time, by SMS (no chat any more) to the new number.
    following = min(after[d.id].due_at for d in waiting)
    plan(sqlite_url, protocol, following)
    reminder = fetch(sqlite_url, select(OutboundMessage).where(
        OutboundMessage.template_id == "dose.reminder").order_by(OutboundMessage.id))[-1][0]
    assert (reminder.channel, reminder.address, reminder.due_at) == ("sms", NEW_PHONE, following)

    trail = audited(sqlite_url, "patients", "BJ01-001")
    assert ("dose_time", "08:00", "09:30", "patient moved to Urumqi") in trail
    assert ("tz", "Asia/Shanghai", "Asia/Urumqi", "patient moved to Urumqi") in trail
    assert ("phone", OLD_PHONE, NEW_PHONE, "patient moved to Urumqi") in trail
    assert ("telegram_id", "770001", None, "lost phone") in trail
    dose_trail = audited(sqlite_url, "doses", str(waiting[0].id))
    assert ("due_at", waiting[0].due_at.isoformat(),
            after[waiting[0].id].due_at.isoformat(), "patient moved to Urumqi") in dose_trail


def test_a_relinked_chat_cannot_use_the_old_code_and_the_new_one_links(
        sqlite_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    protocol = load_protocol()
    setup_site(capsys)
    old = enrol(capsys)["link_code"]
    outcome = run_cli(capsys, "patient", "relink", "BJ01-001", "--reason", "code expired")
    assert outcome.status == 0, outcome.err
    assert "no Telegram link to end" in outcome.out
    new = outcome.out.split("link code: ")[1].split()[0]
    assert link(sqlite_url, protocol, old, 770002) is linking.LinkOutcome.REFUSED
    assert link(sqlite_url, protocol, new, 770002) is linking.LinkOutcome.LINKED


def test_a_deactivated_staff_members_button_is_refused_and_pages_go_to_the_others(
        sqlite_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    protocol = load_protocol()
    setup_site(capsys)
    enrol(capsys)
    for role, telegram_id in (("coordinator", "4242"), ("investigator", "4343")):
        assert run_cli(capsys, "staff", "add", "--site", "BJ01", "--role", role, "--name", "王",
                       "--telegram-id", telegram_id).status == 0
    coordinator = fetch(sqlite_url, select(Staff.id).where(Staff.telegram_id == 4242))[0][0]
    outcome = run_cli(capsys, "staff", "deactivate", str(coordinator), "--reason",
                      "left the hospital", "--json")
    assert outcome.status == 0, outcome.err
    assert json.loads(outcome.out)["changed"] == {"active": {"old": True, "new": False}}
    assert audited(sqlite_url, "staff", str(coordinator)) == [
        ("active", "True", "False", "left the hospital")]
    again = run_cli(capsys, "staff", "deactivate", str(coordinator), "--reason", "x")
    assert again.status != 0
    assert "already deactivated" in again.err

    now = WALL_CLOCK.now()

    async def open_and_press(database: Database) -> tuple[int, str]:
        async with database.write() as session:
            subject = (await session.execute(select(Patient))).scalar_one()
            alert = await alerts.open_alert(session, protocol, site_id="BJ01", patient=subject,
                                            kind="symptom", tier=Tier.SAME_DAY, now=now,
                                            received_at=now, summary="fever")
            alert_id = alert.id
        core = Conversation(database, protocol, SimulatedClock(now + timedelta(minutes=1)))
        outcome = await core.handle(InboundEvent(
            "telegram", "9001", "4242", "", f"alert:ack:{alert_id}",
            now + timedelta(minutes=1), {"chat_id": 4242}))
        return alert_id, str(outcome)

    alert_id, _ = run(sqlite_url, open_and_press)
    alert = fetch(sqlite_url, select(Alert).where(Alert.id == alert_id))[0][0]
    assert (alert.status, alert.acknowledged_by) == ("open", None)
    paged = fetch(sqlite_url, select(AlertEvent.detail).where(AlertEvent.kind == "paged"))
    assert "investigator" in paged[0][0]
    pages = fetch(sqlite_url, select(OutboundMessage.address).where(
        OutboundMessage.alert_id == alert_id))
    assert pages == [("4343",)]


def test_staff_and_site_updates_are_audited(sqlite_url: str,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    setup_site(capsys)
    assert run_cli(capsys, "staff", "add", "--site", "BJ01", "--role", "coordinator", "--name",
                   "李", "--telegram-id", "5151").status == 0
    staff_id = fetch(sqlite_url, select(Staff.id))[0][0]
    outcome = run_cli(capsys, "staff", "update", str(staff_id), "--phone", "+8613811112222",
                      "--language", "en", "--role", "investigator", "--reason", "promoted",
                      "--json")
    assert outcome.status == 0, outcome.err
    changed = json.loads(outcome.out)["changed"]
    assert changed["role"] == {"old": "coordinator", "new": "investigator"}
    assert changed["phone"]["new"] == "+8613811112222"
    fields = {row[0] for row in audited(sqlite_url, "staff", str(staff_id))}
    assert {"phone", "language", "role"} <= fields
    outcome = run_cli(capsys, "site", "update", "BJ01", "--phone", "+861069156114", "--tz",
                      "Asia/Urumqi", "--reason", "new switchboard")
    assert outcome.status == 0, outcome.err
    assert "phone None -> +861069156114" in outcome.out
    assert [row[0] for row in audited(sqlite_url, "sites", "BJ01")] == ["tz", "phone"]


@pytest.mark.parametrize(("argv", "message"), [
    (["patient", "update", "BJ01-001", "--reason", "x"], "nothing to change"),
    (["patient", "update", "BJ01-001", "--reason", " ", "--tz", "UTC"], "a reason is required"),
    (["patient", "update", "BJ01-009", "--reason", "x", "--tz", "UTC"], "no patient BJ01-009"),
    (["patient", "update", "BJ01-001", "--reason", "x", "--dose-time", "23:00"], "quiet hours"),
    (["patient", "update", "BJ01-001", "--reason", "x", "--phone", OLD_PHONE],
     "belongs to another patient"),
    (["staff", "update", "99", "--reason", "x", "--language", "en"], "no staff member 99"),
    (["site", "update", "BJ01", "--reason", "x", "--tz", "Mars/Base"], "tz: 'Mars/Base'"),
])
def test_refused_corrections_change_nothing(sqlite_url: str, capsys: pytest.CaptureFixture[str],
                                            argv: list[str], message: str) -> None:
    setup_site(capsys)
    enrol(capsys)
    enrol(capsys, "BJ01-002", "--phone", OLD_PHONE)
    before = counts(sqlite_url)
    outcome = run_cli(capsys, *argv)
    assert outcome.status != 0
    assert message in outcome.err
    assert counts(sqlite_url) == before


def test_a_baseline_correction_replans_visits_and_is_refused_after_an_answered_dose(
        sqlite_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    protocol = load_protocol()
    setup_site(capsys)
    enrol(capsys, baseline=today())
    plan(sqlite_url, protocol, WALL_CLOCK.now())
    new = today() + timedelta(days=7)
    outcome = run_cli(capsys, "patient", "update", "BJ01-001", "--baseline", new.isoformat(),
                      "--reason", "randomised a week later", "--json")
    assert outcome.status == 0, outcome.err
    visits = {row[0].name: row[0] for row in fetch(sqlite_url, select(Visit))}
    assert visits["W4"].target_date == new + timedelta(days=28)
    assert visits["W4"].scheduled_date == new + timedelta(days=28)
    assert visits["W4"].revision == 1
    for dose in doses(sqlite_url):  # rows before the new baseline are not doses any more
        assert dose.state == ("cancelled" if dose.local_date < new else "scheduled")

    async def answer(database: Database) -> None:
        async with database.write() as session:
            row = (await session.execute(select(DoseRecord).where(
                DoseRecord.local_date == new))).scalar_one_or_none()
            if row is None:  # not planned yet: plant one answered dose
                return
            row.answered_at = WALL_CLOCK.now()

    plan(sqlite_url, protocol, schedule.local_instant(new, schedule.parse_dose_time("08:00"),
                                                      "Asia/Shanghai") - timedelta(hours=12))
    run(sqlite_url, answer)
    back = run_cli(capsys, "patient", "update", "BJ01-001", "--baseline", today().isoformat(),
                   "--reason", "typo")
    assert back.status != 0
    assert "has answered a dose already" in back.err
    forced = run_cli(capsys, "patient", "update", "BJ01-001", "--baseline",
                     today().isoformat(), "--reason", "typo", "--force")
    assert forced.status == 0, forced.err
    assert fetch(sqlite_url, select(AuditEntry.field).where(AuditEntry.action == "force")) == [
        ("baseline",)]


def test_withdraw_asks_for_confirmation_and_scripts_say_yes(
        sqlite_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    setup_site(capsys)
    enrol(capsys)
    refused = run_cli(capsys, "patient", "withdraw", "BJ01-001", "--reason", "consent")
    assert refused.status != 0
    assert "add --yes" in refused.err
    assert patient(sqlite_url).status == "active"
    done = run_cli(capsys, "patient", "withdraw", "BJ01-001", "--reason", "consent", "--yes")
    assert done.status == 0, done.err
    assert patient(sqlite_url).status == "withdrawn"

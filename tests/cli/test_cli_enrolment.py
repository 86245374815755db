"""Admin CLI on both backends: sites, staff, enrolment, pause/resume/withdraw, all audited."""

from __future__ import annotations

import asyncio
import getpass
import json
from datetime import UTC, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, text

from engage.clock import SystemClock
from storage.db import Database
from storage.models import AuditEntry, LinkCode, Patient, Site, Staff
from study.enrolment import hash_code
from tests.cli.support import counts, fetch, run_cli, setup_site

# The CLI reads the wall clock (SystemClock): so do tests of what it did.
WALL_CLOCK = SystemClock()


pytestmark = pytest.mark.usefixtures("cli_database")


def _enrol(capsys: pytest.CaptureFixture[str], subject: str = "BJ01-001",
           *extra: str) -> dict[str, str]:
    outcome = run_cli(capsys, "patient", "enroll", subject, "--site", "BJ01", "--baseline",
                      "2026-03-02", "--dose-time", "8:00", "--language", "zh", "--json", *extra)
    assert outcome.status == 0, outcome.err
    return dict(json.loads(outcome.out))


def test_site_and_staff_are_registered(db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    outcome = run_cli(capsys, "site", "add", "SH02", "--name", "仁济医院", "--tz",
                      "Asia/Shanghai", "--phone", "+86 21 6838 3000", "--json")
    assert outcome.status == 0, outcome.err
    assert json.loads(outcome.out)["phone"] == "+862168383000"
    outcome = run_cli(capsys, "staff", "add", "--site", "SH02", "--role", "Coordinator",
                      "--name", "李护士", "--telegram-id", "4242", "--language", "en")
    assert outcome.status == 0, outcome.err
    assert "SH02" in outcome.out
    assert run_cli(capsys, "staff", "add", "--role", "admin", "--name", "Admin").status == 0
    site = fetch(db_url, select(Site))[0][0]
    assert (site.name, site.tz) == ("仁济医院", "Asia/Shanghai")
    staff = [row[0] for row in fetch(db_url, select(Staff).order_by(Staff.id))]
    assert [(s.site_id, s.role, s.telegram_id, s.language) for s in staff] == [
        ("SH02", "coordinator", 4242, "en"), (None, "admin", None, "zh")]
    entities = [row[0] for row in fetch(db_url, select(AuditEntry.entity))]
    assert entities == ["sites", "staff", "staff"]


@pytest.mark.parametrize(("argv", "message"), [
    (["site", "add", "BJ02", "--name", "x", "--tz", "Asia/Beijing"], "tz: 'Asia/Beijing'"),
    (["site", "add", "BJ01", "--name", "x", "--tz", "UTC"], "site BJ01 already exists"),
    (["site", "add", "BJ 1", "--name", "x", "--tz", "UTC"], "site: 'BJ 1'"),
    (["staff", "add", "--role", "coordinator", "--name", "x"], "every role but admin"),
    (["staff", "add", "--site", "ZZ", "--role", "pi", "--name", "x"], "no site ZZ"),
    (["staff", "add", "--site", "BJ01", "--role", "pi", "--name", " "], "name: "),
    (["staff", "add", "--site", "BJ01", "--role", "nurse", "--name", "x"], "role: 'nurse'"),
    (["staff", "add", "--site", "BJ01", "--role", "pi", "--name", "x", "--phone", "555"],
     "phone: '555'"),
    (["staff", "add", "--site", "BJ01", "--role", "pi", "--name", "x", "--telegram-id", "7"],
     "7 is already registered"),
])
def test_bad_site_or_staff_changes_nothing(db_url: str, capsys: pytest.CaptureFixture[str],
                                           argv: list[str], message: str) -> None:
    setup_site(capsys)
    assert run_cli(capsys, "staff", "add", "--site", "BJ01", "--role", "coordinator", "--name",
                   "王", "--telegram-id", "7").status == 0
    before = fetch(db_url, select(AuditEntry.id))
    outcome = run_cli(capsys, *argv)
    assert outcome.status != 0
    assert message in outcome.err
    assert outcome.err.startswith("error: ")
    assert outcome.out == ""
    assert fetch(db_url, select(AuditEntry.id)) == before


def test_enrol_prints_a_link_code_that_is_stored_hashed(
        db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    setup_site(capsys)
    outcome = run_cli(capsys, "patient", "enroll", "BJ01-001", "--site", "BJ01", "--baseline",
                      "2026-03-02", "--dose-time", "8:05", "--language", "ZH", "--phone",
                      "+86 138 1234 5678")
    assert outcome.status == 0, outcome.err
    code = outcome.out.split("link code: ")[1].split()[0]
    assert f"/start {code}" in outcome.out
    assert f"t.me/<bot username>?start={code}" in outcome.out
    patient = fetch(db_url, select(Patient))[0][0]
    assert (patient.subject_id, patient.dose_time, patient.language, patient.tz, patient.phone,
            patient.status) == ("BJ01-001", "08:05", "zh", "Asia/Shanghai", "+8613812345678",
                                "active")
    link = fetch(db_url, select(LinkCode))[0][0]
    assert link.code_hash == hash_code(code)
    assert link.expires_at - link.created_at == timedelta(hours=72)

    data = _enrol(capsys, "BJ01-002", "--tz", "Asia/Urumqi")
    assert set(data) == {"subject_id", "link_code"}
    assert data["subject_id"] == "BJ01-002"
    codes = [row[0] for row in fetch(db_url, select(LinkCode.code_hash))]
    assert hash_code(data["link_code"]) in codes


@pytest.mark.parametrize(("extra", "messages"), [
    (["--site", "XX"], ["no site XX"]),
    (["--subject", "BJ01-001"], ["BJ01-001 is already enrolled"]),
    (["--phone", "+8613812345678"], ["belongs to another patient"]),
    (["--baseline", "2026-02-30", "--dose-time", "24:00", "--language", "fr", "--tz", "Nowhere"],
     ["baseline: '2026-02-30'", "dose_time: '24:00'", "language: 'fr'", "tz: 'Nowhere'"]),
])
def test_bad_enrolment_changes_nothing(db_url: str, capsys: pytest.CaptureFixture[str],
                                       extra: list[str], messages: list[str]) -> None:
    setup_site(capsys)
    _enrol(capsys, "BJ01-001", "--phone", "+8613812345678")
    options = {"--subject": "BJ01-002", "--site": "BJ01", "--baseline": "2026-03-02",
               "--dose-time": "08:00", "--language": "en"}
    options.update(dict(zip(extra[::2], extra[1::2], strict=True)))
    subject = options.pop("--subject")
    before = counts(db_url)
    outcome = run_cli(capsys, "patient", "enroll", subject,
                      *[part for pair in options.items() for part in pair])
    assert outcome.status != 0
    for message in messages:
        assert message in outcome.err
    assert len(outcome.err.splitlines()) == len(messages)
    assert counts(db_url) == before


def test_status_changes_leave_audit_rows(db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    setup_site(capsys)
    started = WALL_CLOCK.now()
    _enrol(capsys)
    for action, reason in (("pause", "住院两周"), ("resume", "出院"), ("withdraw", "consent")):
        yes = ["--yes"] if action == "withdraw" else []
        outcome = run_cli(capsys, "patient", action, "BJ01-001", "--reason", reason, "--json",
                          *yes)
        assert outcome.status == 0, outcome.err
    assert json.loads(outcome.out) == {"subject_id": "BJ01-001", "old": "active",
                                       "new": "withdrawn", "reason": "consent"}
    entries = [row[0] for row in fetch(db_url, select(AuditEntry).where(
        AuditEntry.entity == "patients").order_by(AuditEntry.id))]
    user = getpass.getuser()
    assert all((e.actor_kind, e.actor_id) == ("cli", user) for e in entries)
    assert all(e.at.tzinfo == UTC and started <= e.at <= WALL_CLOCK.now() for e in entries)
    created = entries[0]
    assert (created.action, created.entity_id, created.reason) == ("create", "BJ01-001",
                                                                    "enrolment")
    assert "status=active" in (created.new_value or "")
    assert "link_code" in entries[1].action  # the code itself is never in the audit trail
    changes = [(e.field, e.old_value, e.new_value, e.reason) for e in entries[2:]]
    assert changes == [("status", "active", "paused", "住院两周"),
                       ("status", "paused", "active", "出院"),
                       ("status", "active", "withdrawn", "consent")]
    status = fetch(db_url, select(Patient.status))[0][0]
    assert status == "withdrawn"


@pytest.mark.parametrize(("argv", "message"), [
    (["patient", "resume", "BJ01-001", "--reason", "x"], "is active, not paused"),
    (["patient", "pause", "BJ01-999", "--reason", "x"], "no patient BJ01-999"),
    (["patient", "pause", "BJ01-001", "--reason", "  "], "reason: a reason is required"),
])
def test_refused_status_change_changes_nothing(db_url: str, capsys: pytest.CaptureFixture[str],
                                               argv: list[str], message: str) -> None:
    setup_site(capsys)
    _enrol(capsys)
    before = counts(db_url)
    outcome = run_cli(capsys, *argv)
    assert outcome.status != 0
    assert message in outcome.err
    assert counts(db_url) == before
    assert fetch(db_url, select(Patient.status))[0][0] == "active"


def test_withdrawn_is_final(db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    setup_site(capsys)
    _enrol(capsys)
    assert run_cli(capsys, "patient", "withdraw", "BJ01-001", "--reason", "x",
                   "--yes").status == 0
    outcome = run_cli(capsys, "patient", "resume", "BJ01-001", "--reason", "x")
    assert outcome.status != 0
    assert "withdrawn" in outcome.err


def test_reason_is_required_by_the_parser(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run_cli(capsys, "patient", "pause", "BJ01-001")
    assert exit_info.value.code != 0
    assert "--reason" in capsys.readouterr().err


def test_fresh_sqlite_file_is_migrated_on_first_command(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'new.db'}"
    monkeypatch.setenv("ENGAGE_DATABASE_URL", url)
    setup_site(capsys)
    assert fetch(url, select(Site.id)) == [("BJ01",)]


@pytest.mark.postgres
def test_postgres_without_schema_asks_for_db_upgrade(
        postgres_url: str, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    async def forget_schema() -> None:
        database = Database(postgres_url)
        async with database.engine.begin() as conn:
            await conn.execute(text("DROP TABLE alembic_version"))
        await database.dispose()

    asyncio.run(forget_schema())
    monkeypatch.setenv("ENGAGE_DATABASE_URL", postgres_url)
    outcome = run_cli(capsys, "site", "add", "BJ01", "--name", "x", "--tz", "UTC")
    assert outcome.status != 0
    assert "run `engage db upgrade`" in outcome.err
    assert fetch(postgres_url, select(Site.id)) == []

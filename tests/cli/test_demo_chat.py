"""`engage demo --interactive` driven through its standard input, as a person would type."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import select

from messages import catalogue
from storage.db import Database
from storage.models import Alert, InboundMessage, Patient, Staff

LINES = [
    "SH-001",  # who am I: a patient on Telegram, in Chinese
    "taken",
    "我今天发烧了，38.5度",
    ":as SH-coordinator",
    "/alerts",
    "1",  # the first button of the alert listed: Acknowledge
    ":as XJ-001",  # an English patient on SMS
    "1",  # SMS: the number is the word TAKEN
    "/quit",
    "this line is never read",
]


def chat(folder: Path, lines: list[str]) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("ENGAGE_")}
    return subprocess.run(
        [sys.executable, "-m", "engage.cli", "demo", "--interactive", "--db",
         str(folder / "chat.db"), "--patients", "8", "--first-day", "2025-03-17"],
        input="\n".join(lines) + "\n", capture_output=True, text=True, cwd=folder, env=env,
        timeout=120, check=False)


async def _state(path: Path) -> tuple[list[tuple[str, str | None]], list[tuple[str, str]]]:
    db = Database(f"sqlite+aiosqlite:///{path}")
    try:
        async with db.read() as session:
            rows = (await session.execute(select(Alert.status, Staff.role).outerjoin(
                Staff, Staff.id == Alert.acknowledged_by))).all()
            alerts: list[tuple[str, str | None]] = [(status, role) for status, role in rows]
            answers = [(subject, outcome or "") for subject, outcome in (await session.execute(
                select(Patient.subject_id, InboundMessage.outcome)
                .join(Patient, Patient.id == InboundMessage.patient_id)
                .where(InboundMessage.outcome.not_like("link%"))
                .order_by(InboundMessage.id))).all()]
            return alerts, answers
    finally:
        await db.dispose()


def test_a_patient_says_taken_reports_a_fever_and_staff_acknowledge_it_from_alerts(
        tmp_path: Path) -> None:
    done = chat(tmp_path, LINES)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    out = done.stdout
    taken = out.index(catalogue.render("dose.taken_ack", "zh"))
    urgent = out.index(catalogue.render("report.reply_same_day", "zh"))
    listed = out.index(catalogue.render("alert.list_header", "zh", count=1))
    acknowledged = out.index(catalogue.render("alert.acknowledged", "zh", id=1).splitlines()[0])
    assert taken < urgent < listed < acknowledged
    assert catalogue.render("dose.taken_ack", "en") in out[acknowledged:]
    assert "this line is never read" not in out
    alerts, answers = asyncio.run(_state(tmp_path / "chat.db"))
    assert alerts == [("acknowledged", "coordinator")]
    assert answers == [("SH-001", "dose_taken"), ("SH-001", "report"),
                       ("XJ-001", "dose_taken")]


def test_the_chat_ends_quietly_at_the_end_of_its_input(tmp_path: Path) -> None:
    done = chat(tmp_path, ["nobody-by-this-name", "SH-002", "帮助"])
    assert done.returncode == 0, done.stderr[-3000:]
    assert "nobody called 'nobody-by-this-name'" in done.stdout
    assert "you are SH-002 (sms, zh)" in done.stdout
    assert catalogue.render("chat.help", "zh", phone="+862112345678") in done.stdout
    assert "the database is kept" in done.stdout

"""'Am I on the real drug?' gets one neutral scripted answer, the same for all, logged."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from sqlalchemy import select

from messages import catalogue
from storage.audit import Actor
from storage.db import Database
from storage.models import AuditEntry, Patient
from study import enrolment, reports
from trial.enrolment import validate_enrolment
from trial.protocol import Protocol
from trial.triage import asks_about_allocation

NOW = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)


@pytest.mark.parametrize(("text", "asks"), [
    ("Am I on the placebo?", True),
    ("is this the REAL DRUG or a sugar pill", True),
    ("我吃的是真药还是安慰剂？", True),
    ("我是哪一组的", True),
    ("发烧38.6度", False),
    ("I took my medication", False),
])
def test_questions_about_allocation_are_recognised(protocol: Protocol, text: str,
                                                   asks: bool) -> None:
    assert asks_about_allocation(text, protocol.triage) is asks


def test_the_answer_is_neutral_in_both_languages(protocol: Protocol) -> None:
    for language in ("zh", "en"):
        text = catalogue.render("report.blinding_answer", language).casefold()
        for word in [*protocol.sms.forbidden_words, "switch", "切换", "真药", "active"]:
            assert word.casefold() not in text


async def test_the_question_is_answered_logged_and_a_red_flag_still_pages(
        sqlite_db: Database, protocol: Protocol) -> None:
    async with sqlite_db.write() as session:
        await enrolment.add_site(session, site_id="S1", name="One", tz="Asia/Shanghai",
                                 phone=None, now=NOW, actor=Actor.cli("t"))
        for role, chat in (("coordinator", 1001), ("investigator", 1002)):  # someone on call
            await enrolment.add_staff(session, site_id="S1", role=role, name=role,
                                      telegram_id=chat, phone=None, language="zh", now=NOW,
                                      actor=Actor.cli("t"))
        patient, _ = await enrolment.enroll(session, protocol, validate_enrolment(
            subject="S1-001", site="S1", baseline_date=str(date(2026, 3, 2)), dose_at="08:00",
            lang="zh"), now=NOW, actor=Actor.cli("t"))
    async with sqlite_db.write() as session:
        patient = (await session.execute(select(Patient))).scalar_one()
        replies = await reports.receive_report(session, protocol, patient,
                                               "发烧38.6度，我吃的是不是安慰剂？", now=NOW,
                                               inbound_id=None)
    assert [r.message_id for r in replies] == ["report.reply_same_day",
                                               "report.blinding_answer"]
    async with sqlite_db.read() as session:
        logged = (await session.execute(select(AuditEntry).where(
            AuditEntry.action == "blinding_question"))).scalars().all()
    assert [(e.actor_id, e.new_value) for e in logged] == [
        ("S1-001", "发烧38.6度，我吃的是不是安慰剂？")]

"""Staff queries through the conversation core: staff get answers with page buttons; patients
get the patient help; strangers get the same neutral answer whatever they send."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from sqlalchemy import select

from bot.conversation import Conversation, InboundEvent
from engage.clock import SimulatedClock
from storage.db import Database
from storage.models import AuditEntry, OutboundMessage
from tests.factories import add_site, add_staff, dose_row, enrol
from tests.factories import patient_row as add_subject
from trial.protocol import Protocol

_updates = iter(range(50_000, 60_000))


def tg(text: str, clock: SimulatedClock, user: int, action: str | None = None) -> InboundEvent:
    return InboundEvent("telegram", str(next(_updates)), str(user), text, action, clock.now(),
                        {"chat_id": user})


@pytest.fixture
def core(db: Database, protocol: Protocol, clock: SimulatedClock) -> Conversation:
    return Conversation(db, protocol, clock)


async def last_reply(db: Database) -> OutboundMessage:
    async with db.read() as session:
        return (await session.execute(select(OutboundMessage)
                                      .order_by(OutboundMessage.id.desc()).limit(1))).scalar_one()


async def test_staff_adherence_pages_through_the_core(
        db: Database, protocol: Protocol, clock: SimulatedClock, core: Conversation) -> None:
    await add_site(db, clock.now())
    await add_staff(db, clock.now(), telegram_id=9001)
    async with db.write() as session:
        for n in range(30):
            subject = await add_subject(session, f"BJ01-{n:03d}", "BJ01")
            await dose_row(session, subject, date(2026, 3, 1), "taken")
    await core.handle(tg("/adherence", clock, 9001))
    first = await last_reply(db)
    assert first.template_id == "staff.page"
    assert len(first.body) < 4096
    assert [c["action"] for c in first.choices] == ["page:adherence:2"]
    assert "BJ01-000" in first.body
    assert "BJ01-029" not in first.body
    clock.advance(timedelta(seconds=5))
    await core.handle(tg("", clock, 9001, action="page:adherence:2"))
    second = await last_reply(db)
    assert "BJ01-029" in second.body
    assert "BJ01-000" not in second.body
    assert [c["action"] for c in second.choices] == ["page:adherence:1"]
    async with db.read() as session:
        looks = (await session.execute(select(AuditEntry).where(
            AuditEntry.action == "query"))).scalars().all()
    assert [(a.field, a.entity_id) for a in looks] == [("adherence", "BJ01")] * 2


async def test_a_patient_sending_a_staff_command_gets_the_patient_help(
        db: Database, protocol: Protocol, clock: SimulatedClock, core: Conversation) -> None:
    await add_site(db, clock.now())
    enrolled = await enrol(db, protocol, clock.now())
    await core.handle(tg(f"/start {enrolled.code}", clock, 556))
    for command in ("/adherence", "/patient S001", "/visits", "/digest"):
        await core.handle(tg(command, clock, 556))
        reply = await last_reply(db)
        assert reply.template_id == "chat.help", command
        assert "S001" not in reply.body


async def test_a_stranger_gets_the_same_neutral_answer_for_staff_commands(
        db: Database, protocol: Protocol, clock: SimulatedClock, core: Conversation) -> None:
    await add_site(db, clock.now())
    await enrol(db, protocol, clock.now())
    await core.handle(tg("hello", clock, 777))
    neutral = (await last_reply(db)).body
    for command in ("/adherence", "/patient S001", "/digest BJ01"):
        await core.handle(tg(command, clock, 777))
        assert (await last_reply(db)).body == neutral

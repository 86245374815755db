"""A report longer than a Telegram message still pages (issue 15): the page and the /alerts item
quote it cut with an ellipsis under 4,096 characters, the whole report is stored. Through the
real aiogram client, the poller and the dispatcher against the fake Bot API (which refuses a
text over 4,096 characters, as Telegram does)."""

from __future__ import annotations

import asyncio

from aiogram import Bot
from sqlalchemy import select

from bot.channels.telegram import TelegramChannel
from bot.conversation import Conversation, InboundEvent
from engage.clock import SimulatedClock
from fakes.polling import Polling
from fakes.servers import outbox_sender
from fakes.telegram_api import FakeTelegramAPI
from messages import catalogue
from storage.db import Database
from storage.models import Alert, OutboundMessage, SymptomReport
from tests.factories import add_site, add_staff, enrol
from trial.protocol import Protocol

PATIENT = 911
COORDINATOR = 9011


async def test_a_4000_character_chest_pain_report_pages_and_is_listed_by_alerts(
        db: Database, protocol: Protocol, clock: SimulatedClock, bot: Bot,
        fake_telegram: FakeTelegramAPI) -> None:
    await add_site(db, clock.now())
    await add_staff(db, clock.now(), telegram_id=COORDINATOR)
    enrolled = await enrol(db, protocol, clock.now())
    sender = outbox_sender(db, protocol, {"telegram": TelegramChannel(bot)}, clock)
    core = Conversation(db, protocol, clock, wake=sender.wake)
    await core.handle(InboundEvent("telegram", "link", str(PATIENT), f"/start {enrolled.code}",
                                   None, clock.now(), {"chat_id": PATIENT}))
    stop = asyncio.Event()
    sending = asyncio.create_task(sender.run(stop))
    polling = Polling(bot, core, clock, fake_telegram)
    story = "I have had chest pain since this morning. "
    report = (story + "It started after breakfast and I feel it again now. " * 80)[:4000]
    assert len(report) == 4000
    try:
        fake_telegram.inject(fake_telegram.message_update(PATIENT, report))
        (page,) = await fake_telegram.texts_to(COORDINATOR, within=10.0)
        assert len(page) < 4096
        assert story.strip() in page
        assert "…" in page  # the quote is cut, visibly
        update = fake_telegram.inject(fake_telegram.message_update(COORDINATOR, "/alerts"))
        await polling.handled(update)
        listed = (await fake_telegram.texts_to(COORDINATOR, count=3, within=10.0))[1:]
    finally:
        await polling.close()
        stop.set()
        await asyncio.wait_for(sending, 5)
    async with db.read() as session:
        alert = (await session.execute(select(Alert))).scalars().one()
        stored = (await session.execute(select(SymptomReport.raw_text))).scalars().one()
        failed = (await session.execute(select(OutboundMessage).where(
            OutboundMessage.status == "failed"))).scalars().all()
    assert stored == report  # the whole report is kept
    assert not failed
    assert listed[0] == catalogue.render("alert.list_header", "en", count=1)
    assert f"#{alert.id}" in listed[1]
    assert story.strip() in listed[1]
    assert len(listed[1]) < 4096

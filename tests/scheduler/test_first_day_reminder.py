"""Becoming reachable re-arms today's open dose (issue 15): a patient who enrols and links after
the dose time but before its follow-up time gets today's reminder at the next tick, and so does
one who unblocks the bot then. Through the real tick, dispatcher and aiogram client against the
fake Bot API; time is the simulated clock."""

from __future__ import annotations

import asyncio
from datetime import date, timedelta

from aiogram import Bot
from sqlalchemy import select

from bot.channels.telegram import TelegramChannel
from bot.conversation import Conversation, InboundEvent
from engage.clock import SimulatedClock
from fakes.servers import outbox_sender
from fakes.telegram_api import FakeTelegramAPI
from scheduler.tick import run_tick
from storage.db import Database
from storage.models import DoseRecord
from tests.factories import add_site, add_staff, enrol
from trial.protocol import Protocol

PATIENT = 921


async def dose_on(db: Database, day: date) -> DoseRecord:
    async with db.read() as session:
        return (await session.execute(select(DoseRecord).where(
            DoseRecord.local_date == day))).scalars().one()


def reminders(fake: FakeTelegramAPI) -> list[str]:
    """Texts to the patient carrying today's dose buttons."""
    return [c.params["text"] for c in fake.sent("sendMessage", PATIENT)
            if "dose:taken:" in str(c.params.get("reply_markup", ""))]


async def until_sent(fake: FakeTelegramAPI, count: int, within: float = 10.0) -> list[str]:
    deadline = asyncio.get_running_loop().time() + within
    while len(reminders(fake)) < count:
        assert asyncio.get_running_loop().time() < deadline, fake.sent("sendMessage", PATIENT)
        await asyncio.sleep(0.02)
    return reminders(fake)


async def test_linking_after_the_dose_time_before_the_follow_up_sends_the_reminder_at_once(
        db: Database, protocol: Protocol, clock: SimulatedClock, bot: Bot,
        fake_telegram: FakeTelegramAPI) -> None:
    # 08:00 Shanghai is the dose time; the follow-up comes an hour later.
    await add_site(db, clock.now())
    clock.advance(timedelta(minutes=20))  # 08:20: enrolled after today's dose time
    enrolled = await enrol(db, protocol, clock.now(), dose_time="08:00")
    await run_tick(db, protocol, clock.now())  # today's dose is planned: nobody to remind yet
    today = date(2026, 3, 2)
    dose = await dose_on(db, today)
    assert dose.state == "scheduled"
    assert dose.next_action_at == dose.cutoff_at  # it would wait for the cut-off
    sender = outbox_sender(db, protocol, {"telegram": TelegramChannel(bot)}, clock)
    core = Conversation(db, protocol, clock, wake=sender.wake)
    stop = asyncio.Event()
    sending = asyncio.create_task(sender.run(stop))
    try:
        clock.advance(timedelta(minutes=5))  # 08:25: linked on Telegram
        await core.handle(InboundEvent("telegram", "link", str(PATIENT),
                                       f"/start {enrolled.code}", None, clock.now(),
                                       {"chat_id": PATIENT}))
        # The runner's next tick, at most a minute later: here at once.
        await run_tick(db, protocol, clock.now() + timedelta(seconds=30))
        (reminder,) = await until_sent(fake_telegram, 1)
    finally:
        stop.set()
        await asyncio.wait_for(sending, 5)
    dose = await dose_on(db, today)
    assert dose.state == "reminded"
    assert dose.next_action_at == dose.follow_up_at
    assert reminder


async def test_after_an_unblock_the_reminder_that_waited_is_delivered(
        db: Database, protocol: Protocol, clock: SimulatedClock, bot: Bot,
        fake_telegram: FakeTelegramAPI) -> None:
    await add_site(db, clock.now())
    await add_staff(db, clock.now(), telegram_id=9021)
    enrolled = await enrol(db, protocol, clock.now(), dose_time="08:00",
                           baseline=date(2026, 3, 3))
    sender = outbox_sender(db, protocol, {"telegram": TelegramChannel(bot)}, clock)
    core = Conversation(db, protocol, clock, wake=sender.wake)
    await core.handle(InboundEvent("telegram", "link", str(PATIENT), f"/start {enrolled.code}",
                                   None, clock.now(), {"chat_id": PATIENT}))
    clock.set(clock.now() + timedelta(days=1, minutes=-10))  # 07:50 on the first dose day
    await run_tick(db, protocol, clock.now())  # planned; linked and reachable until now
    await core.handle(InboundEvent("telegram", "block", str(PATIENT), "", "member:blocked",
                                   clock.now(), {"chat_id": PATIENT}))
    stop = asyncio.Event()
    sending = asyncio.create_task(sender.run(stop))
    try:
        for minutes in (0, 10, 11):  # 07:50, 08:00 (the dose time), 08:01: blocked, no route
            await run_tick(db, protocol, clock.now() + timedelta(minutes=minutes))
        await asyncio.sleep(0.2)
        assert reminders(fake_telegram) == []
        clock.advance(timedelta(minutes=25))  # 08:15: unblocked
        await core.handle(InboundEvent("telegram", "unblock", str(PATIENT), "",
                                       "member:unblocked", clock.now(), {"chat_id": PATIENT}))
        await run_tick(db, protocol, clock.now() + timedelta(seconds=30))
        await until_sent(fake_telegram, 1)
    finally:
        stop.set()
        await asyncio.wait_for(sending, 5)
    dose = await dose_on(db, date(2026, 3, 3))
    assert dose.state == "reminded"

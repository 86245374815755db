"""Issue 14: an emergency reply and its page never wait behind routine traffic. Forty routine
replies are queued for one patient's number on a paced SMS sender; the patient then writes an
emergency: the reply that says call 120, and the coordinator's page, go out next through the
real twilio client and the fake Twilio, before the routine replies still waiting. Order is
asserted, not time."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable

import pytest

from bot.channels.twilio import SmsChannel
from bot.conversation import Conversation, InboundEvent
from engage.clock import SimulatedClock
from fakes.twilio_api import FakeTwilioAPI
from messages import catalogue
from scheduler.dispatcher import SAFETY_FIRST, OutboxSender
from scheduler.ratelimit import ChannelRate, RateLimiter
from storage import outbox
from storage.db import Database
from tests.factories import add_site, add_staff, enrol
from tests.workers.dispatch_support import insert_rows, row
from trial.protocol import Protocol

PATIENT = "+8613900000021"
COORDINATOR = "+8613800000121"
ROUTINE = 40
_ids = itertools.count(1)


async def _until(condition: Callable[[], bool], within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)



def _text(body: str, clock: SimulatedClock) -> InboundEvent:
    return InboundEvent("sms", f"SM{next(_ids):032d}", PATIENT, body, None, clock.now(),
                        {"to": "+15005550006"})


@pytest.mark.timeout(60)
async def test_emergency_reply_and_page_overtake_queued_routine_replies(
        sqlite_db: Database, protocol: Protocol, clock: SimulatedClock,
        fake_twilio: FakeTwilioAPI, sms: SmsChannel) -> None:
    db = sqlite_db
    await add_site(db, clock.now())
    await add_staff(db, clock.now(), telegram_id=None, phone=COORDINATOR)
    await enrol(db, protocol, clock.now(), phone=PATIENT, language="zh")
    # One sender paced at 10 SMS/s: the forty routine replies take about four seconds.
    dispatcher = OutboxSender(db, protocol, {"sms": sms}, clock, worker_id="priority",
                            rates={"sms": ChannelRate(10.0)}, poll_interval=0.05)
    conversation = Conversation(db, protocol, clock, wake=dispatcher.wake)
    emergency = catalogue.render("report.reply_emergency", "zh")
    routine = catalogue.render("report.reply_routine", "zh")
    page = "alert"  # the staff SMS page names the alert, never the report's words

    def bodies() -> list[str]:
        return [r.params["Body"] for r in fake_twilio.sent_to()]

    stop = asyncio.Event()
    loop = asyncio.create_task(dispatcher.run(stop))
    try:
        for _ in range(ROUTINE):
            await conversation.handle(_text("有点头痛", clock))
        await _until(lambda: sum(routine in b for b in bodies()) >= 3)
        await conversation.handle(_text("胸口很痛，喘不上气", clock))
        queued_after = len(fake_twilio.sent_to())  # the emergency reply and page are queued
        await _until(lambda: any(emergency in b for b in bodies())
                     and len(fake_twilio.sent_to(COORDINATOR)) >= 1)
        sent = fake_twilio.sent_to()
        first_emergency = next(n for n, r in enumerate(sent) if emergency in r.params["Body"])
        first_page = next(n for n, r in enumerate(sent) if r.params["To"] == COORDINATOR)
        await _until(lambda: sum(routine in b for b in bodies()) == ROUTINE)
    finally:
        stop.set()
        await asyncio.wait_for(loop, 10)
    # Both went out next: behind at most the few routine replies already holding a slot or in
    # flight, not behind the rest still waiting (before the fix: after all forty).
    assert queued_after < ROUTINE // 2, queued_after
    assert first_emergency <= queued_after + 8, (first_emergency, queued_after)
    assert first_page <= queued_after + 8, (first_page, queued_after)
    assert page in fake_twilio.sent_to(COORDINATOR)[0].params["Body"].lower()
    assert [r.params["To"] for r in fake_twilio.sent_to()].count(PATIENT) == ROUTINE + 1


@pytest.mark.parametrize(("channel", "rate"), [
    ("sms", ChannelRate(50.0)),  # a sender's pace
    ("telegram", ChannelRate(100.0, 50.0)),  # the bot's pace and one chat's
])
async def test_an_urgent_message_takes_its_turn_at_a_busy_address_before_routine_ones(
        channel: str, rate: ChannelRate) -> None:
    limits = RateLimiter({channel: rate})
    order: list[str] = []

    async def send(name: str, urgent: bool) -> None:
        await limits.acquire(channel, PATIENT, urgent=urgent)
        order.append(name)

    routine = [asyncio.create_task(send(f"r{n}", False)) for n in range(6)]
    await asyncio.sleep(0)
    routine_wait = limits.delay(channel, PATIENT)
    assert limits.delay(channel, PATIENT, urgent=True) <= routine_wait
    urgent = asyncio.create_task(send("urgent", True))
    await asyncio.gather(*routine, urgent)
    assert order.index("urgent") <= 2, order  # behind the one holding the number, not all six


async def test_the_safety_lane_claims_call_120_replies_and_pages_before_its_other_rows(
        db: Database, clock: SimulatedClock) -> None:
    now = clock.now()
    same_day = [row(f"reply:{n}:0", address=f"+86138{n:08d}", channel="sms", lane="safety",
                    template_id="report.reply_same_day", now=now) for n in range(30)]
    await insert_rows(db, [*same_day,
                           row("reply:99:0", address=PATIENT, channel="sms", lane="safety",
                               template_id="report.reply_emergency", now=now),
                           row("alert:1:page:1:1:sms", address=COORDINATOR, channel="sms",
                               lane="safety", template_id="alert.page_sms", now=now)])
    async with db.write() as session:
        claimed = await outbox.claim(session, lane="safety", channels=["sms"], now=now,
                                     limit=5, first=SAFETY_FIRST)
    assert [r.template_id for r in claimed] == [
        "report.reply_emergency", "alert.page_sms", *["report.reply_same_day"] * 3]

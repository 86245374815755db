"""Concurrent writers on one SQLite file: many inbound handlers, a dispatcher and a tick at the
same time, each part with its own engine (as separate processes would), and not one
"database is locked"."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import cast

import pytest
from sqlalchemy import func, select

from bot.conversation import Conversation, Handled, InboundEvent
from engage.clock import SimulatedClock
from scheduler.dispatcher import OutboxSender
from scheduler.tick import run_tick
from storage.db import Database
from storage.models import Alert, DoseRecord, InboundMessage, OutboundMessage, SymptomReport
from tests.factories import add_site, add_staff, enrol
from tests.workers.dispatch_support import FakeChannel
from trial.protocol import Protocol

PATIENTS = 20
TEXTS = ("TAKEN", "发烧38.6度", "有点头痛", "HELP")  # dose, same-day, routine, help


def _phone(n: int) -> str:
    return f"+86139{n:08d}"


async def test_twenty_inbound_handlers_a_dispatcher_and_a_tick_share_one_sqlite_file(
        sqlite_url: str, protocol: Protocol, clock: SimulatedClock,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    setup = Database(sqlite_url)
    inbound, sender, ticker = (Database(sqlite_url) for _ in range(3))
    try:
        await add_site(setup, clock.now())
        await add_staff(setup, clock.now(), telegram_id=9001, phone="+8613800000001")
        for n in range(PATIENTS):
            await enrol(setup, protocol, clock.now(), subject=f"S{n:03d}", phone=_phone(n),
                        language="zh")
        await run_tick(setup, protocol, clock.now())  # today's doses and their reminders
        clock.advance(timedelta(minutes=5))

        channels = {"telegram": FakeChannel("telegram", delay=0.002),
                    "sms": FakeChannel("sms", delay=0.002)}
        dispatcher = OutboxSender(sender, protocol, channels, clock, worker_id="w", rates={})
        core = Conversation(inbound, protocol, clock, wake=dispatcher.wake)

        def event(n: int, round_: int) -> InboundEvent:
            return InboundEvent("sms", f"SM{round_:02d}{n:030d}", _phone(n),
                                TEXTS[(n + round_) % len(TEXTS)], None, clock.now(), {})

        async def dispatching() -> int:
            total = 0
            for _ in range(10):
                total += await dispatcher.run_once()
                await asyncio.sleep(0)
            return total

        async def ticking() -> int:
            reports = [await run_tick(ticker, protocol, clock.now()) for _ in range(3)]
            return sum(sum(r.counts.values()) for r in reports)

        results = await asyncio.wait_for(asyncio.gather(
            *(core.handle(event(n, r)) for r in range(2) for n in range(PATIENTS)),
            dispatching(), ticking(), return_exceptions=True), 60)
        errors = [r for r in results if isinstance(r, BaseException)]
        assert errors == []
        handled = cast(list[Handled], results[:2 * PATIENTS])
        assert [h.outcome for h in handled if h.outcome == "error"] == []

        while await dispatcher.run_once():  # drain what the handlers queued last
            pass
        async with setup.read() as session:
            unhandled = (await session.execute(select(func.count()).select_from(
                InboundMessage).where(InboundMessage.handled_at.is_(None)))).scalar_one()
            total_in = (await session.execute(select(func.count()).select_from(
                InboundMessage))).scalar_one()
            replies = (await session.execute(select(func.count()).select_from(
                OutboundMessage).where(OutboundMessage.dedupe_key.like("reply:%")))).scalar_one()
            statuses = dict((await session.execute(select(
                OutboundMessage.status, func.count()).group_by(OutboundMessage.status))).all())
            fevers = (await session.execute(select(func.count()).select_from(SymptomReport)
                                            .where(SymptomReport.tier == "same_day"))
                      ).scalar_one()
            alerts = (await session.execute(select(func.count()).select_from(Alert).where(
                Alert.kind == "symptom"))).scalar_one()
            taken = (await session.execute(select(func.count()).select_from(DoseRecord).where(
                DoseRecord.state == "taken"))).scalar_one()
    finally:
        for db in (setup, inbound, sender, ticker):
            await db.dispose()

    assert (total_in, unhandled) == (2 * PATIENTS, 0)
    assert replies == 2 * PATIENTS  # one reply to each message, none lost, none twice
    fever_messages = sum(1 for r in range(2) for n in range(PATIENTS)
                         if TEXTS[(n + r) % len(TEXTS)] == "发烧38.6度")
    assert fevers == alerts == fever_messages
    assert taken == sum(1 for r in range(2) for n in range(PATIENTS)
                        if TEXTS[(n + r) % len(TEXTS)] == "TAKEN")
    assert set(statuses) == {"sent"}  # every message out was sent
    logged = [r.getMessage() + (_FORMAT.formatException(r.exc_info) if r.exc_info else "")
              for r in caplog.records]
    assert [text for text in logged if "database is locked" in text] == []


_FORMAT = logging.Formatter()

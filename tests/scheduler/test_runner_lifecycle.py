"""The runner: ticks on schedule without overlapping, dispatches, and stops gracefully."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime

from sqlalchemy import select

from engage.clock import SystemClock
from scheduler.dispatcher import OutboxSender
from scheduler.runner import Runner
from scheduler.tick import TickReport
from storage import outbox
from storage.db import Database
from storage.models import OutboundMessage
from tests.workers.dispatch_support import FakeChannel, insert_rows, row
from trial.protocol import Protocol


async def _until(condition: object, within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_ticks_never_overlap_and_a_planned_message_is_sent(
        sqlite_db: Database, protocol: Protocol) -> None:
    clock = SystemClock()
    telegram = FakeChannel("telegram")
    dispatcher = OutboxSender(sqlite_db, protocol, {"telegram": telegram}, clock, worker_id="w",
                            poll_interval=30.0)  # only a wake can make it claim soon
    running, most, ticks = 0, 0, 0

    async def tick(db: Database, _protocol: Protocol, now: datetime) -> TickReport:
        nonlocal running, most, ticks
        running += 1
        most = max(most, running)
        ticks += 1
        if ticks == 2:  # the second tick plans a message
            async with db.write() as session:
                await outbox.enqueue(session, key="k", channel="telegram", address="1",
                                     template_id="dose.reminder", template_version="t",
                                     language="en", body="hello", due_at=now, now=now)
        await asyncio.sleep(0.25)  # longer than the interval: the next run must wait
        running -= 1
        return TickReport(at=now, counts={"plan": 1 if ticks == 2 else 0})

    runner = Runner(sqlite_db, protocol, dispatcher, clock, tick_seconds=0.1, tick=tick)
    await runner.start()
    try:
        assert runner.running
        await _until(lambda: bool(telegram.sent), within=3.0)
    finally:
        await runner.stop()
    assert ticks >= 2
    assert most == 1
    assert not runner.running
    assert runner.last_tick is not None


async def test_stop_lets_in_flight_sends_finish_and_leaves_the_rest_queued(
        sqlite_db: Database, protocol: Protocol) -> None:
    clock = SystemClock()
    await insert_rows(sqlite_db, [row(f"m{i}", address=str(i), now=clock.now())
                                  for i in range(10)])
    telegram = FakeChannel("telegram", delay=0.3)
    dispatcher = OutboxSender(sqlite_db, protocol, {"telegram": telegram}, clock, worker_id="w",
                            concurrency=2)

    async def idle_tick(_db: Database, _protocol: Protocol, now: datetime) -> TickReport:
        return TickReport(at=now)

    runner = Runner(sqlite_db, protocol, dispatcher, clock, tick=idle_tick)
    await runner.start()
    await _until(lambda: len(telegram.attempts) == 2)
    await runner.stop()
    async with sqlite_db.read() as session:
        statuses = sorted((await session.execute(select(OutboundMessage.status))).scalars())
    assert statuses == ["queued"] * 8 + ["sent"] * 2
    assert len(telegram.sent) == 2


async def test_a_failing_tick_is_reported_and_ticking_goes_on(
        sqlite_db: Database, protocol: Protocol) -> None:
    calls = 0

    async def broken(_db: Database, _protocol: Protocol, now: datetime) -> TickReport:
        nonlocal calls
        calls += 1
        raise RuntimeError("planner bug")

    dispatcher = OutboxSender(sqlite_db, protocol, {}, SystemClock(), worker_id="w")
    runner = Runner(sqlite_db, protocol, dispatcher, SystemClock(), tick_seconds=0.05,
                    tick=broken)
    await runner.start()
    try:
        await _until(lambda: calls >= 3)
    finally:
        await runner.stop()
    assert runner.last_tick_error == "RuntimeError: planner bug"

"""Rate limits kept by the dispatcher itself, `retry_after`, parallel chats, and the safety lane
during a fan-out. These run in real (short) time: rate limits are about real seconds."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable

import pytest
from sqlalchemy import func, select

from engage.clock import SystemClock
from engage.config import load_settings
from engage.runtime import configured_rates, sms_channel
from fakes.servers import ACCOUNT, AUTH_TOKEN, SERVICE
from fakes.twilio_api import FakeTwilioAPI
from messages.channel import TransientSendError
from scheduler.dispatcher import OutboxSender
from scheduler.ratelimit import Bucket, ChannelRate
from storage import outbox
from storage.db import Database
from storage.models import OutboundMessage
from tests.workers.dispatch_support import FakeChannel, insert_rows, message, row
from trial.protocol import Protocol


async def _until(condition: Callable[[], bool], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def _running(dispatcher: OutboxSender,
                   body: Callable[[], Awaitable[None]]) -> None:
    stop = asyncio.Event()
    loop = asyncio.create_task(dispatcher.run(stop))
    try:
        await body()
    finally:
        stop.set()
        await asyncio.wait_for(loop, 5)


async def test_bucket_spaces_slots_and_serves_urgent_waiters_first() -> None:
    bucket = Bucket(20.0)  # one slot every 50 ms
    order: list[str] = []

    async def take(name: str, urgent: bool) -> None:
        await bucket.acquire(urgent=urgent)
        order.append(name)

    start = time.monotonic()
    routine = [asyncio.create_task(take(f"r{i}", False)) for i in range(5)]
    await asyncio.sleep(0)
    urgent = asyncio.create_task(take("urgent", True))
    await asyncio.gather(*routine, urgent)
    assert order[:2] == ["r0", "urgent"]  # r0 took the free slot; urgent jumps the queue
    assert time.monotonic() - start >= 5 * 0.05 - 0.01


async def test_one_chat_is_paced_while_other_chats_go_in_parallel(
        sqlite_db: Database, protocol: Protocol) -> None:
    clock = SystemClock()
    now = clock.now()
    await insert_rows(sqlite_db, [row("a1", address="1", now=now), row("a2", address="1", now=now),
                                  *(row(f"b{i}", address=f"{100 + i}", now=now)
                                    for i in range(20))])
    telegram = FakeChannel("telegram", delay=0.1)
    dispatcher = OutboxSender(sqlite_db, protocol, {"telegram": telegram}, clock, worker_id="w",
                            rates={"telegram": ChannelRate(1000.0, 4.0)}, concurrency=30)
    start = time.monotonic()
    assert await dispatcher.run_once() == 22
    same_chat = [s.at for s in telegram.to("1")]
    assert len(same_chat) == 2
    assert same_chat[1] - same_chat[0] >= 0.25 - 0.01  # 4/s to one chat
    others = [s.at - start for s in telegram.sent if s.message.address != "1"]
    assert max(others) < 0.6  # 20 sends of 0.1 s each went side by side, not one by one


async def test_channel_rate_is_never_exceeded(sqlite_db: Database, protocol: Protocol) -> None:
    clock = SystemClock()
    await insert_rows(sqlite_db, [row(f"m{i}", address=str(i), now=clock.now())
                                  for i in range(25)])
    telegram = FakeChannel("telegram")
    dispatcher = OutboxSender(sqlite_db, protocol, {"telegram": telegram}, clock, worker_id="w",
                            telegram_rate=50.0, concurrency=50)
    await dispatcher.run_once()
    times = sorted(s.at for s in telegram.sent)
    assert len(times) == 25
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert min(gaps) >= 0.02 - 0.003  # 50/s: at least 20 ms between any two sends


async def test_retry_after_delays_that_chat_and_the_whole_bot(
        sqlite_db: Database, protocol: Protocol) -> None:
    clock = SystemClock()
    (first,) = await insert_rows(sqlite_db, [row("a", address="1", now=clock.now())])
    telegram = FakeChannel("telegram")
    telegram.fail_next("1", TransientSendError("429 Too Many Requests", retry_after=0.5))
    dispatcher = OutboxSender(sqlite_db, protocol, {"telegram": telegram}, clock, worker_id="w",
                            poll_interval=0.05)

    async def body() -> None:
        await _until(lambda: len(telegram.attempts) == 1)
        refused_at = telegram.attempts[0][0]
        async with sqlite_db.write() as session:
            await outbox.enqueue(session, key="b", channel="telegram", address="2",
                                 template_id="dose.reminder", template_version="t", language="en",
                                 body="b", due_at=clock.now(), now=clock.now())
        dispatcher.wake()
        await _until(lambda: len(telegram.sent) == 2)
        assert min(s.at for s in telegram.sent) - refused_at >= 0.5 - 0.02

    await _running(dispatcher, body)
    retried = await message(sqlite_db, first)
    assert (retried.status, retried.attempts) == ("sent", 1)  # waiting as told is no failure


async def test_safety_message_is_not_delayed_by_a_routine_fan_out(
        sqlite_db: Database, protocol: Protocol) -> None:
    clock = SystemClock()
    await insert_rows(sqlite_db, [row(f"m{i}", address=str(1000 + i), now=clock.now())
                                  for i in range(300)])
    telegram = FakeChannel("telegram", delay=0.01)
    dispatcher = OutboxSender(sqlite_db, protocol, {"telegram": telegram}, clock, worker_id="w",
                            telegram_rate=100.0, poll_interval=0.5)
    latency: list[float] = []

    async def body() -> None:
        await _until(lambda: len(telegram.sent) >= 30)
        queued_at = time.monotonic()
        async with sqlite_db.write() as session:
            await outbox.enqueue(session, key="alert:1:page", channel="telegram", address="7",
                                 template_id="alert.page", template_version="t", language="en",
                                 body="page", due_at=clock.now(), now=clock.now(),
                                 lane=outbox.SAFETY)
        dispatcher.wake()
        await _until(lambda: bool(telegram.to("7")))
        latency.append(telegram.to("7")[0].at - queued_at)

    await _running(dispatcher, body)
    assert latency[0] < 0.25  # behind at most a slot or two of the 100/s bot, not 270 sends
    async with sqlite_db.read() as session:
        counts = dict((await session.execute(
            select(OutboundMessage.status, func.count()).group_by(OutboundMessage.status)
        )).all())
    # A graceful stop: in-flight sends finished, the rest of the fan-out is still queued.
    assert set(counts) <= {"sent", "queued"}
    assert counts["queued"] > 100
    assert counts["sent"] == len(telegram.sent)


async def test_engage_sms_rate_paces_replies_through_twilio(
        sqlite_db: Database, protocol: Protocol, fake_twilio: FakeTwilioAPI,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The pacing `engage run` gives its dispatcher (configured_rates), from the environment.
    monkeypatch.setenv("ENGAGE_SMS_RATE", "20")
    monkeypatch.setenv("ENGAGE_TWILIO_ACCOUNT_SID", ACCOUNT)
    monkeypatch.setenv("ENGAGE_TWILIO_AUTH_TOKEN", AUTH_TOKEN)
    monkeypatch.setenv("ENGAGE_TWILIO_MESSAGING_SERVICE_SID", SERVICE)
    monkeypatch.setenv("ENGAGE_TWILIO_API_URL", fake_twilio.base_url)
    settings = load_settings(_env_file=None)
    assert (settings.sms_rate, settings.telegram_rate) == (20.0, 29.0)
    sms = sms_channel(settings, protocol)
    assert sms is not None
    clock = SystemClock()
    await insert_rows(sqlite_db, [row(f"reply:{n}:0", address=f"+86138{n:08d}", channel="sms",
                                      now=clock.now()) for n in range(100)])
    dispatcher = OutboxSender(sqlite_db, protocol, {"sms": sms}, clock, worker_id="paced",
                            rates=configured_rates(settings), poll_interval=0.05)
    started = time.monotonic()
    try:
        await _running(dispatcher, lambda: _until(lambda: len(fake_twilio.sent_to()) == 100,
                                                  within=15.0))
    finally:
        await sms.close()
    took = time.monotonic() - started
    assert 3.0 < took < 12.0, took  # 100 at 20/s: about 5 s (at the default 1/s: 100 s)
    async with sqlite_db.read() as session:
        statuses = (await session.execute(select(OutboundMessage.status))).scalars().all()
    assert set(statuses) == {"sent"}

"""Fan-out: 10,000 reminders due in the same minute through the real OutboxSender and the real
aiogram adapter to the fake Bot API, against a bare `bot.send_message` loop; then 600 reminders
under Telegram's limits (30 messages/s, 1/s per chat) enforced by the fake.

    .venv/bin/python bench/fanout.py [--patients 10000] [--limited 600]

The fake Bot API runs in its own process (bench/fakes.py), so the sender has one core and the
fake the other. The reminders are planned by the real tick step (`scheduler.doses`).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import common
from aiogram.types import InlineKeyboardMarkup
from sqlalchemy import func, select

from bot.channels.telegram import TelegramChannel, keyboard, make_bot
from messages.channel import Choice
from scheduler.dispatcher import OutboxSender
from scheduler.doses import plan_doses
from scheduler.ratelimit import ChannelRate
from storage.db import Database
from storage.models import OutboundMessage
from study import outgoing
from trial.protocol import Protocol, load_protocol

CONCURRENCY = 50  # the OutboxSender's default routine-lane bound on sends in flight
UNLIMITED = {"telegram": ChannelRate(0.0), "sms": ChannelRate(0.0)}


async def statuses(db: Database) -> Counter[str]:
    async with db.read() as session:
        rows = (await session.execute(select(OutboundMessage.status, func.count())
                                      .group_by(OutboundMessage.status))).all()
    return Counter(dict(rows))


async def planned(db: Database, protocol: Protocol, patients: int) -> float:
    await common.seed(db, protocol, patients=patients, phone=False)
    started = time.perf_counter()
    await plan_doses(db, protocol, common.START)
    return time.perf_counter() - started


async def bare_loop(fakes: common.Fakes,
                    messages: Sequence[tuple[int, str, InlineKeyboardMarkup | None]]) -> float:
    """The baseline: `CONCURRENCY` workers calling bot.send_message; returns messages/s."""
    bot = make_bot(common.TOKEN, fakes.telegram)
    pending = iter(messages)

    async def worker() -> None:
        for chat, text, markup in pending:
            await bot.send_message(chat, text, reply_markup=markup)

    try:
        await bot.get_me()  # the connection pool is warm for both contenders
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        return len(messages) / (time.perf_counter() - started)
    finally:
        await bot.session.close()


async def unlimited(directory: Path, protocol: Protocol, patients: int) -> bool:
    print(f"-- phase 1: {patients:,} reminders, no rate limit at the fake")
    db = await common.sqlite_database(directory, "fanout.db")
    with common.fakes() as fakes:
        planning = await planned(db, protocol, patients)
        async with db.read() as session:
            rows = (await session.execute(select(OutboundMessage))).scalars().all()
        print(f"   planned {len(rows):,} reminders with the tick's dose step in "
              f"{planning:.2f} s (not part of the rate below)")
        messages = [(int(r.address), r.body, keyboard(tuple(Choice(**c) for c in r.choices)))
                    for r in rows]
        baseline = [await bare_loop(fakes, messages)]
        await fakes.stats(reset=True)

        bot = make_bot(common.TOKEN, fakes.telegram)
        await bot.get_me()
        dispatcher = OutboxSender(db, protocol, {"telegram": TelegramChannel(bot)},
                                common.OffsetClock(), worker_id="bench", rates=UNLIMITED,
                                concurrency=CONCURRENCY)
        started = time.perf_counter()
        handled = await dispatcher.run_once()
        elapsed = time.perf_counter() - started
        await bot.session.close()
        stats = await fakes.stats(reset=True)
        baseline.append(await bare_loop(fakes, messages))
    states = await statuses(db)
    await db.dispose()
    rate = handled / elapsed
    best = max(baseline)
    print(f"   baseline bare bot.send_message loop, {CONCURRENCY} in flight: "
          f"{baseline[0]:,.0f} and {baseline[1]:,.0f} msg/s (before/after; the better is used)")
    print(f"   OutboxSender + aiogram adapter: {handled:,} handled in {elapsed:.2f} s = "
          f"{rate:,.0f} msg/s; fake received {stats['sent']:,}; outbox {dict(states)}")
    ok = handled == len(rows) and stats["sent"] == len(rows) and states["sent"] == len(rows)
    return common.goal("rate >= 0.8 x baseline", ok and rate >= 0.8 * best,
                       f"ratio {rate / best:.2f} ({rate:,.0f} vs {best:,.0f} msg/s)")


async def limited(directory: Path, protocol: Protocol, total: int) -> bool:
    print(f"-- phase 2: {total} messages, fake enforcing 30 msg/s per bot and 1/s per chat")
    db = await common.sqlite_database(directory, "limited.db")
    repeated, extra = 10, 2  # 10 chats get 2 more messages each: the per-chat limit matters
    with common.fakes(rate=30, chat_rate=1) as fakes:
        await planned(db, protocol, total - repeated * extra)
        async with db.write() as session:
            for patient, n in itertools.product(range(1, repeated + 1), range(extra)):
                await outgoing.queue(
                    session, outgoing.Recipient("telegram", str(common.Seeded.chat(patient)),
                                                "en", patient_id=patient),
                    outgoing.Rendered(f"Notice {n}", "visit.notice", "1"),
                    key=f"notice:bench:{patient}:{n}", now=common.START)
        bot = make_bot(common.TOKEN, fakes.telegram)
        await bot.get_me()
        # The production limits: the OutboxSender's defaults (30/s per bot, 1/s per chat).
        dispatcher = OutboxSender(db, protocol, {"telegram": TelegramChannel(bot)},
                                common.OffsetClock(), worker_id="bench")
        started = time.perf_counter()
        handled = await dispatcher.run_once()
        elapsed = time.perf_counter() - started
        await bot.session.close()
        stats = await fakes.stats(calls=True)
    states = await statuses(db)
    await db.dispose()
    arrivals = [c[0] for c in stats["calls"] if c[4] == 200]
    span = max(arrivals) - min(arrivals) if arrivals else float("nan")
    ideal = total / 30
    print(f"   {handled} handled in {elapsed:.2f} s (first to last arrival {span:.2f} s; "
          f"ideal {ideal:.1f} s); outbox {dict(states)}")
    print(f"   429s answered by the fake: {stats['refused']} {stats['refused_by']}; most "
          f"sends in any 1 s window: {stats['max_in_window']}")
    done = states["sent"] == total and stats["sent"] == total
    ok = common.goal(f"all {total} within 1.05 x {ideal:.0f} s", done and elapsed <= 1.05 * ideal,
                     f"{elapsed:.2f} s = {elapsed / ideal:.3f} x ideal")
    return common.goal("zero 429s received", stats["refused"] == 0,
                       f"{stats['refused']} received") and ok


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--patients", type=int, default=10_000)
    parser.add_argument("--limited", type=int, default=600)
    args = parser.parse_args()
    common.header("fan-out")
    protocol = load_protocol()
    with tempfile.TemporaryDirectory(prefix="engage-bench-") as tmp:
        await unlimited(Path(tmp), protocol, args.patients)
        await limited(Path(tmp), protocol, args.limited)


if __name__ == "__main__":
    asyncio.run(main())

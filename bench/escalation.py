"""Escalation latency: from a fever SMS arriving (a signed Twilio webhook) to the coordinator's
alert page reaching the fake Bot API, on an idle system and while a 10,000-reminder fan-out
drains through the same dispatcher; against a minimal handler that sends the page itself.

    .venv/bin/python bench/escalation.py [--reports 200] [--rate 10] [--fanout 10000]

Three processes: the system (HTTP app + conversation core + OutboxSender with its production
defaults: 30 msg/s per bot, 1/s per chat, 1 SMS/s, wired as `engage run` wires them), the fake
providers (Telegram limits enforced: 30/s, 1/s per chat), and this load generator. Latency is
the page's arrival at the fake minus the report's scheduled send time (both CLOCK_MONOTONIC).
Reports come round-robin from 20 sites, each with one coordinator on Telegram, so each
coordinator chat receives one page every 2 s at 10 reports/s (below Telegram's 1/s per chat).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import signal
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import common
from aiohttp import web

from storage.db import Database
from trial.protocol import load_protocol

SITES = 20
REPORT = "发烧 39.2 度，全身发冷"
SUBJECT = re.compile(r"P(\d{6})")


# -- the system (run with --serve in a child process) --------------------------------------

async def serve(kind: str, url: str, port: int, telegram: str, twilio: str,
                sms_rate: float) -> None:
    from bot.channels.telegram import TelegramChannel, make_bot
    from bot.channels.twilio import SmsChannel
    from bot.channels.twilio.inbound import TwilioInbound
    from bot.conversation import Conversation
    from bot.http import Server, build_app
    from scheduler.dispatcher import OutboxSender

    db = Database(url)
    protocol = load_protocol()
    clock = common.OffsetClock()
    public_url = f"http://127.0.0.1:{port}"
    bot = make_bot(common.TOKEN, telegram)
    stop = asyncio.Event()
    tasks = []
    sms = None
    if kind == "engage":
        sms = SmsChannel(account_sid=common.ACCOUNT, auth_token=common.AUTH_TOKEN,
                         api_url=twilio, status_callback=f"{public_url}/twilio/status",
                         messaging_service_sid=common.SERVICE,
                         validity_seconds=protocol.sms.validity_period_seconds)
        dispatcher = OutboxSender(db, protocol, {"telegram": TelegramChannel(bot), "sms": sms},
                                clock, worker_id="bench", sms_rate=sms_rate)
        conversation = Conversation(db, protocol, clock, wake=dispatcher.wake)
        app = build_app(Server(db=db, routes=TwilioInbound(
            conversation, db, clock, public_url, common.AUTH_TOKEN).routes()))
        tasks.append(asyncio.create_task(dispatcher.run(stop)))
    else:
        app = baseline_app(db, public_url, bot)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await runner.cleanup()
    await asyncio.gather(*tasks)
    await bot.session.close()
    if sms is not None:
        await sms.close()
    await db.dispose()


def baseline_app(db: Database, public_url: str, bot: object) -> web.Application:
    """Signature, raw insert, then bot.send_message to the site's coordinator at once."""
    from aiogram import Bot

    assert isinstance(bot, Bot)

    async def page(form: Mapping[str, Any]) -> None:
        patient = int(str(form["From"])[-8:])
        site = 1 + patient % SITES
        text = str(form.get("Body", ""))
        await bot.send_message(common.COORDINATOR_CHAT + site,
                               f"URGENT alert\nSubject: P{patient:06d}\nReport: {text}")

    return common.baseline_app(db, public_url, then=page)


@contextlib.contextmanager
def system(kind: str, url: str, fakes: common.Fakes, sms_rate: float) -> Iterator[int]:
    port = common.free_port()
    with common.served([common.PYTHON, __file__, "--serve", kind, "--db", url, "--port",
                        str(port), "--telegram", fakes.telegram, "--twilio", fakes.twilio,
                        "--sms-rate", str(sms_rate)], port, cwd=common.ROOT):
        yield port


# -- one measurement -----------------------------------------------------------------------

async def reports(port: int, fakes: common.Fakes, reporters: list[int], rate: float,
                  within: float) -> tuple[list[float], int]:
    """Send one fever report per reporter at `rate`; return page latencies and 429s."""
    url = f"http://127.0.0.1:{port}/twilio/sms"
    forms = []
    for patient in reporters:
        form = common.sms_form(common.Seeded.phone(patient), REPORT)
        forms.append((patient, urlencode(form).encode(), {
            **common.signed(url, form), "Content-Type": "application/x-www-form-urlencoded"}))
    await fakes.stats(reset=True)
    sent_at: dict[int, float] = {}
    async with aiohttp.ClientSession() as http:
        async def post(body: bytes, headers: dict[str, str]) -> None:
            async with http.post(url, data=body, headers=headers) as response:
                await response.read()
                assert response.status == 200, response.status

        tasks = []
        start = time.monotonic() + 0.05
        for i, (patient, body, headers) in enumerate(forms):
            intended = start + i / rate
            await asyncio.sleep(max(0.0, intended - time.monotonic()))
            sent_at[patient] = intended
            tasks.append(asyncio.create_task(post(body, headers)))
        await asyncio.gather(*tasks)
    pages: dict[int, float] = {}
    deadline = time.monotonic() + within
    while True:
        stats = await fakes.stats(calls=True)
        for arrived, method, chat, text, status in stats["calls"]:
            match = SUBJECT.search(text)
            if (status == 200 and method == "sendMessage" and match
                    and int(chat) > common.COORDINATOR_CHAT
                    and int(chat) <= common.COORDINATOR_CHAT + SITES):
                patient = int(match.group(1))
                if patient in sent_at and patient not in pages:
                    pages[patient] = arrived - sent_at[patient]
        if len(pages) == len(reporters) or time.monotonic() > deadline:
            return list(pages.values()), int(stats["refused"])
        await asyncio.sleep(0.5)


def summary(label: str, latencies: list[float], expected: int, refused: int) -> str:
    return (f"{label}: {len(latencies)}/{expected} pages, p50 "
            f"{common.ms(common.percentile(latencies, 50))}, p99 "
            f"{common.ms(common.percentile(latencies, 99))}, max "
            f"{common.ms(max(latencies) if latencies else float('nan'))}; 429s {refused}")


async def seeded(directory: Path, name: str, fanout: int, reporters: int) -> str:
    from scheduler.doses import plan_doses

    protocol = load_protocol()
    db = await common.sqlite_database(directory, name)
    # Fan-out patients on Telegram (never planned: the tick plans their 08:00 reminder now);
    # reporters by SMS with today's dose already reminded (they get no reminder now).
    if fanout:
        await common.seed(db, protocol, patients=fanout, sites=SITES, phone=False)
    await common.seed(db, protocol, patients=reporters, first=fanout + 1, sites=SITES,
                      telegram=False, open_dose=True)
    await plan_doses(db, protocol, common.START)
    await db.dispose()
    return f"sqlite+aiosqlite:///{directory / name}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reports", type=int, default=200)
    parser.add_argument("--rate", type=float, default=10.0, help="reports per second")
    parser.add_argument("--fanout", type=int, default=10_000)
    parser.add_argument("--sms-rate", type=float, default=1.0,
                        help="the OutboxSender's SMS rate (its default: 1/s, one long code)")
    parser.add_argument("--serve", choices=["engage", "baseline"], help=argparse.SUPPRESS)
    for hidden in ("--db", "--telegram", "--twilio"):
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.serve, args.db, args.port, args.telegram, args.twilio,
                          args.sms_rate))
        return
    common.header("escalation latency (fever SMS -> coordinator's Telegram page)")
    print(f"   {args.reports} fever reports at {args.rate:.0f}/s from {SITES} sites; fake "
          "enforces 30 msg/s and 1/s per chat")
    results: dict[str, tuple[list[float], int]] = {}
    with tempfile.TemporaryDirectory(prefix="engage-bench-") as tmp:
        directory = Path(tmp)
        within = 30 + args.reports / args.rate
        phases = [("baseline idle", "baseline", 0), ("engage idle", "engage", 0),
                  (f"engage during a {args.fanout:,} fan-out", "engage", args.fanout)]
        for n, (label, kind, fanout) in enumerate(phases):
            url = asyncio.run(seeded(directory, f"escalation{n}.db", fanout, args.reports))
            with common.fakes(rate=30, chat_rate=1) as fakes, system(kind, url, fakes,
                                                                  args.sms_rate) as port:
                if fanout:
                    time.sleep(2.0)  # the reminders are draining
                reporters = list(range(fanout + 1, fanout + 1 + args.reports))
                latencies, refused = asyncio.run(reports(port, fakes, reporters, args.rate,
                                                         within))
                drained = asyncio.run(fakes.stats())["sent"] if fanout else 0
            results[label] = (latencies, refused)
            print("   " + summary(label, latencies, args.reports, refused)
                  + (f"; {drained:,} sends reached the fake meanwhile" if fanout else ""),
                  flush=True)
    base, idle, busy = (results[label][0] for label, _, _ in phases)
    ratio = common.percentile(idle, 50) / common.percentile(base, 50)
    print(f"   ratio engage idle / baseline idle: p50 {ratio:.2f}, p99 "
          f"{common.percentile(idle, 99) / common.percentile(base, 99):.2f}")
    complete = len(idle) == args.reports
    common.goal("p99 < 1 s idle", complete and common.percentile(idle, 99) < 1.0,
                f"p99 {common.ms(common.percentile(idle, 99))}")
    common.goal("p99 < 2 s during fan-out",
                len(busy) == args.reports and common.percentile(busy, 99) < 2.0,
                f"p99 {common.ms(common.percentile(busy, 99))}")


if __name__ == "__main__":
    main()

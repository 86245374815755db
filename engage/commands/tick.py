"""`engage tick [--at ISO8601]`: one scheduler pass as of an instant, then one dispatch pass."""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from engage.clock import SimulatedClock
from engage.commands.support import emit, open_database, parse_instant
from engage.config import Settings
from scheduler.tick import run_tick
from storage.db import Database
from trial.protocol import Protocol, load_protocol


def register(sub: argparse._SubParsersAction) -> None:
    tick = sub.add_parser("tick", help="run one scheduler pass (plan what is due, dispatch it)")
    tick.add_argument("--at", metavar="ISO8601",
                      help="the instant of the pass, e.g. 2026-03-02T08:00:00+08:00 "
                           "(default: now; a time without an offset is UTC)")
    tick.add_argument("--json", action="store_true", help="print JSON")
    tick.set_defaults(handler=_tick)


@contextlib.asynccontextmanager
async def _channels(settings: Settings, protocol: Protocol) -> AsyncIterator[dict[str, Any]]:
    """The configured channels (none without credentials), closed afterwards."""
    channels: dict[str, Any] = {}
    closers: list[Any] = []
    try:
        if settings.telegram_token is not None:
            from bot.channels.telegram import TelegramChannel, make_bot

            bot = make_bot(settings.telegram_token.get_secret_value(), settings.telegram_api_url)
            closers.append(bot.session.close)
            channels["telegram"] = TelegramChannel(bot)
        from engage.runtime import sms_channel

        sms = sms_channel(settings, protocol)
        if sms is not None:
            closers.append(sms.close)
            channels["sms"] = sms
        yield channels
    finally:
        for close in closers:
            await close()


async def _dispatch(db: Database, protocol: Protocol, channels: dict[str, Any],
                    at: datetime) -> int | None:
    """One dispatch pass as of `at`; None when there is no channel or no dispatcher."""
    if not channels:
        return None
    try:
        from scheduler.dispatcher import OutboxSender
    except ImportError:
        return None
    dispatcher = OutboxSender(db, protocol, channels, SimulatedClock(at),
                            worker_id=f"tick:{socket.gethostname()}:{os.getpid()}")
    return await dispatcher.run_once()


async def _tick(args: argparse.Namespace, settings: Settings) -> int:
    at = parse_instant(args.at)
    protocol = load_protocol(settings.protocol)
    async with open_database(settings) as database:
        report = await run_tick(database, protocol, at)
        async with _channels(settings, protocol) as channels:
            sent = await _dispatch(database, protocol, channels, at)
    data: dict[str, Any] = {"at": at.isoformat(), "planned": report.counts,
                            "dispatched": sent}
    lines = [f"tick as of {at.isoformat()}"]
    lines += [f"  {name}: {count}" for name, count in report.counts.items()]
    lines.append(f"  dispatched: {sent}" if sent is not None
                 else "  dispatched: - (no channel configured)")
    emit(data, args.json, "\n".join(lines))
    return 0

"""`engage run`: channels, scheduler and HTTP server until SIGINT/SIGTERM, then a clean stop."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal

from engage.config import Settings

QUIET_LOGGERS = ("aiogram.event", "twilio", "aiohttp.access", "apscheduler")


def register(sub: argparse._SubParsersAction) -> None:
    run = sub.add_parser("run", help="run the channels, the scheduler and the HTTP server")
    run.add_argument("--log-level", default="INFO",
                     choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    run.add_argument("--no-telegram-polling", dest="telegram_polling", action="store_false",
                     help="in polling mode, let another worker poll Telegram (one poller per "
                          "bot token); this one still ticks, dispatches and serves HTTP")
    run.set_defaults(handler=_run)


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    # Imported here: aiogram's types take seconds to import, which no other command should pay.
    from engage.runtime import Runtime

    logging.basicConfig(level=args.log_level,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in QUIET_LOGGERS:  # per-request chatter (and nothing secret) from libraries
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLogger().level))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await Runtime(settings, telegram_polling=args.telegram_polling).serve(stop)
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
    return 0

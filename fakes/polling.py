"""The real Telegram poller running in the background of one test, against the fake Bot API."""

from __future__ import annotations

import asyncio
from typing import Any

from aiogram import Bot

from bot.channels.telegram import TelegramPoller, build_dispatcher
from bot.conversation import Conversation
from fakes.telegram_api import FakeTelegramAPI
from trial.clock import Clock


class Polling:
    """Starts a TelegramPoller (short long-poll, fast retries) and stops it."""

    def __init__(self, bot: Bot, core: Conversation, clock: Clock, fake: FakeTelegramAPI,
                 **options: Any) -> None:
        options = {"timeout": 1, "retry_seconds": 0.05, "max_retry_seconds": 0.2, **options}
        self.fake = fake
        self.poller = TelegramPoller(bot, build_dispatcher(core, clock), **options)
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(self.poller.run(self.stop))

    async def handled(self, update_id: int, within: float = 5.0) -> None:
        """Wait until an update is confirmed (stored) and everything taken is handled."""
        await self.fake.wait_confirmed(update_id, within=within)
        await asyncio.wait_for(self.poller.idle(), within)

    async def close(self) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, 5)

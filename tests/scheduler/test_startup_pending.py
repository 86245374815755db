"""At start-up every inbound message stored but never handled (a crash in between) is handled
at once, not a minute later by the sweep."""

from __future__ import annotations

import asyncio
import time

from sqlalchemy import select

from bot.conversation import Conversation, InboundEvent
from engage.clock import SystemClock
from engage.config import Settings
from engage.runtime import Runtime
from storage.db import Database
from storage.models import InboundMessage
from trial.protocol import Protocol


async def test_stored_but_unhandled_messages_are_handled_at_start_up(
        sqlite_url: str, protocol: Protocol) -> None:
    url = sqlite_url
    db = Database(url)
    clock = SystemClock()
    # What a crash right after storing leaves behind: rows with no handled_at.
    await Conversation(db, protocol, clock).store_all([
        InboundEvent("telegram", str(n), str(700 + n), "hello", None, clock.now(),
                     {"chat_id": 700 + n}) for n in range(150)])
    await db.dispose()
    runtime = Runtime(Settings(_env_file=None, database_url=url, http_port=0))
    started = time.monotonic()
    await runtime.start()
    try:
        assert runtime.db is not None
        while True:
            async with runtime.db.read() as session:
                left = (await session.execute(select(InboundMessage.id).where(
                    InboundMessage.handled_at.is_(None)))).scalars().all()
            if not left:
                break
            assert time.monotonic() - started < 10, f"{len(left)} still unhandled"
            await asyncio.sleep(0.05)
    finally:
        await runtime.stop()
    assert time.monotonic() - started < 10  # the sweep alone would wait 60 s

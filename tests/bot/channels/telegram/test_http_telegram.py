"""The Telegram webhook route and /healthz."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiogram import Bot
from sqlalchemy import func, select

from bot.channels.telegram import build_dispatcher, make_bot
from bot.channels.telegram.webhook import SECRET_HEADER, TelegramWebhook
from bot.conversation import Conversation
from bot.http import Server
from engage.clock import SimulatedClock
from fakes.telegram_api import FakeTelegramAPI
from fakes.webhooks import http_client
from storage.db import Database
from storage.models import InboundMessage, OutboundMessage
from trial.protocol import Protocol

SECRET = "webhook-secret_123"


@pytest.fixture
async def bot() -> AsyncIterator[Bot]:
    api = FakeTelegramAPI()
    await api.start()
    bot = make_bot("42:TEST", api.base_url)
    yield bot
    await bot.session.close()
    await api.stop()


def server(db: Database, protocol: Protocol, clock: SimulatedClock, bot: Bot) -> Server:
    core = Conversation(db, protocol, clock)
    return Server(db=db, routes=TelegramWebhook(bot, build_dispatcher(core, clock),
                                                SECRET).routes())


async def counts(db: Database) -> tuple[int, int]:
    async with db.read() as session:
        inbound = (await session.execute(select(func.count()).select_from(InboundMessage))
                   ).scalar_one()
        outbound = (await session.execute(select(func.count()).select_from(OutboundMessage))
                    ).scalar_one()
    return int(inbound), int(outbound)


UPDATE = FakeTelegramAPI().message_update(4242, "hello", update_id=777)


async def test_an_update_id_posted_ten_times_at_once_is_stored_and_answered_once(
        db: Database, protocol: Protocol, clock: SimulatedClock, bot: Bot) -> None:
    async with http_client(server(db, protocol, clock, bot)) as client:
        responses = await asyncio.gather(*(client.post(
            "/telegram/webhook", json=UPDATE, headers={SECRET_HEADER: SECRET})
            for _ in range(10)))
        assert [r.status for r in responses] == [200] * 10
    # 200 means committed: the rows are there as soon as the answers are.
    assert await counts(db) == (1, 1)


@pytest.mark.parametrize("secret", [None, "", "wrong-secret", SECRET + "x"])
async def test_a_missing_or_wrong_secret_is_refused(
        sqlite_db: Database, protocol: Protocol, clock: SimulatedClock, bot: Bot,
        secret: str | None) -> None:
    headers = {} if secret is None else {SECRET_HEADER: secret}
    async with http_client(server(sqlite_db, protocol, clock, bot)) as client:
        response = await client.post("/telegram/webhook", json=UPDATE, headers=headers)
        assert response.status == 401
    assert await counts(sqlite_db) == (0, 0)


async def test_a_failure_before_commit_is_a_500_so_telegram_retries(
        tmp_path: Path, protocol: Protocol, clock: SimulatedClock, bot: Bot) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}")  # no tables: cannot commit
    try:
        async with http_client(server(db, protocol, clock, bot)) as client:
            response = await client.post("/telegram/webhook", json=UPDATE,
                                         headers={SECRET_HEADER: SECRET})
            assert response.status == 500
    finally:
        await db.dispose()


async def test_healthz_names_the_failing_part(
        sqlite_db: Database, clock: SimulatedClock, tmp_path: Path) -> None:
    parts = {"scheduler": True, "dispatcher": True, "telegram": True}
    alive = Server(db=sqlite_db, parts=lambda: parts)
    async with http_client(alive) as client:
        response = await client.get("/healthz")
        assert response.status == 200
        # paging: no open alert reached nobody (nothing is open in an empty database)
        assert await response.json() == {"status": "ok", "database": True, "paging": True,
                                         **parts}
        parts["dispatcher"] = False
        response = await client.get("/healthz")
        assert response.status == 503
        assert (await response.json())["failing"] == ["dispatcher"]
    down = Database(f"sqlite+aiosqlite:///{tmp_path / 'missing-dir' / 'x.db'}")
    try:
        async with http_client(Server(db=down)) as client:
            response = await client.get("/healthz")
            assert response.status == 503
            assert (await response.json())["failing"] == ["database"]
    finally:
        await down.dispose()


async def test_without_twilio_settings_there_is_no_sms_route(
        sqlite_db: Database, clock: SimulatedClock) -> None:
    async with http_client(Server(db=sqlite_db)) as client:
        assert (await client.post("/twilio/sms", data={"Body": "x"})).status == 404
        assert (await client.post("/telegram/webhook", json={})).status == 404

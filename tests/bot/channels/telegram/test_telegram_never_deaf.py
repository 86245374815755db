"""Telegram input survives what the provider sends: an HTML 502 page from a proxy, an update
aiogram's models reject (aiogram #1587), failing getUpdates; polling and webhook alike."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from aiogram import Bot
from sqlalchemy import select

from bot.channels.telegram import build_dispatcher
from bot.channels.telegram.webhook import SECRET_HEADER, TelegramWebhook
from bot.conversation import Conversation
from bot.http import Server
from engage.clock import SimulatedClock
from fakes.polling import Polling
from fakes.telegram_api import Failure, FakeTelegramAPI
from fakes.webhooks import http_client
from messages import catalogue
from storage.db import Database
from storage.models import InboundMessage, Site
from study import digest
from tests.factories import add_site
from trial.protocol import Protocol

SECRET = "never-deaf-secret"


async def inbound(db: Database) -> dict[str, InboundMessage]:
    async with db.read() as session:
        return {r.external_id: r for r in (await session.execute(select(InboundMessage)))
                .scalars()}


async def test_a_502_page_and_an_unparsable_update_do_not_stop_the_messages_behind_them(
        db: Database, protocol: Protocol, clock: SimulatedClock, bot: Bot,
        fake_telegram: FakeTelegramAPI, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="bot.channels.telegram")
    before = fake_telegram.inject(fake_telegram.message_update(701, "hello"))
    bad = fake_telegram.inject(fake_telegram.unparsable_update(702))
    after = fake_telegram.inject(fake_telegram.message_update(703, "anyone there?"))
    fake_telegram.fail_updates("html", times=2)
    polling = Polling(bot, Conversation(db, protocol, clock), clock, fake_telegram)
    try:
        await polling.handled(after)
    finally:
        await polling.close()
    rows = await inbound(db)
    assert set(rows) == {str(before), str(bad), str(after)}
    assert rows[str(bad)].outcome == "unparsable"
    assert rows[str(bad)].handled_at is not None
    assert rows[str(bad)].payload["raw"]["message"]["external_reply"]["story"] == {}
    assert rows[str(bad)].sender == "702"
    assert all(rows[str(u)].handled_at is not None and rows[str(u)].outcome == "unknown"
               for u in (before, after))
    failures = [r.getMessage() for r in caplog.records if "getUpdates failed" in r.getMessage()]
    assert len(failures) == 2
    assert "ClientDecodeError" in failures[0]


async def test_getupdates_failing_in_every_way_is_retried_with_a_capped_backoff(
        sqlite_db: Database, protocol: Protocol, clock: SimulatedClock, bot: Bot,
        fake_telegram: FakeTelegramAPI, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="bot.channels.telegram")
    polling = Polling(bot, Conversation(sqlite_db, protocol, clock), clock, fake_telegram,
                      retry_seconds=0.01, max_retry_seconds=0.04)
    sent = []
    try:
        failures: tuple[str | Failure, ...] = (
            Failure(500, "Internal Server Error"), Failure(502, "Bad Gateway"),
            Failure(409, "Conflict: terminated by other getUpdates"),
            Failure(401, "Unauthorized"), "html")
        for n, failure in enumerate(failures):
            fake_telegram.fail_updates(failure, times=3)
            sent.append(fake_telegram.inject(fake_telegram.message_update(710 + n, "hello")))
            await polling.handled(sent[-1])
    finally:
        await polling.close()
    delays = [float(r.getMessage().rsplit("again in ", 1)[1].split()[0])
              for r in caplog.records if "getUpdates failed" in r.getMessage()]
    assert len(delays) >= 10
    assert max(delays) == 0.04  # doubling from 0.01, capped
    rows = await inbound(sqlite_db)
    assert all(rows[str(u)].outcome == "unknown" for u in sent)


async def test_the_webhook_stores_an_unparsable_update_raw_and_answers_200(
        db: Database, protocol: Protocol, clock: SimulatedClock, bot: Bot,
        fake_telegram: FakeTelegramAPI) -> None:
    core = Conversation(db, protocol, clock)
    server = Server(db=db, routes=TelegramWebhook(bot, build_dispatcher(core, clock),
                                                  SECRET).routes())
    bad = fake_telegram.unparsable_update(705)
    bad["update_id"] = 9001
    after = fake_telegram.message_update(706, "hello", update_id=9002)
    async with http_client(server) as client:
        for update in (bad, bad, after):  # Telegram may deliver it again: stored once
            response = await client.post("/telegram/webhook", json=update,
                                         headers={SECRET_HEADER: SECRET})
            assert response.status == 200
    rows = await inbound(db)
    assert set(rows) == {"9001", "9002"}
    assert rows["9001"].outcome == "unparsable"
    assert rows["9002"].outcome == "unknown"


async def test_the_digest_tells_staff_once_how_many_messages_could_not_be_read(
        sqlite_db: Database, protocol: Protocol, clock: SimulatedClock, bot: Bot,
        fake_telegram: FakeTelegramAPI) -> None:
    await add_site(sqlite_db, clock.now())
    core = Conversation(sqlite_db, protocol, clock)
    inbox = build_dispatcher(core, clock)["inbox"]
    await inbox.store_raw(1, fake_telegram.unparsable_update(707))
    await inbox.store_raw(2, fake_telegram.unparsable_update(707))
    await inbox.store_raw(2, fake_telegram.unparsable_update(707))  # the same update again
    async with sqlite_db.read() as session:
        site = await session.get(Site, "BJ01")
        assert site is not None
        today = await digest.gather(session, protocol, site, now=clock.now()
                                    + timedelta(hours=1))
        tomorrow = await digest.gather(session, protocol, site, now=clock.now()
                                       + timedelta(days=1, hours=1))
    assert today.unreadable == 2
    _header, lines = digest.render(today, "en")
    assert catalogue.render("digest.unreadable", "en", count=2) in lines
    assert tomorrow.unreadable == 0  # told once: the next day's digest counts its own day

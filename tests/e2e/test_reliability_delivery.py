"""Delivery under provider trouble, through the real clients and the real dispatcher: a Telegram
429/5xx storm over many chats, and a Twilio send that times out after Twilio took it.

Already covered elsewhere (not repeated here): the same update_id / MessageSid replayed ten
times at once (tests/bot/channels/telegram/test_http_telegram.py,
tests/bot/channels/twilio/test_http_twilio.py, tests/bot/test_channels_conversation.py), and
status callbacks out of order through the HTTP server (tests/bot/channels/twilio/
test_http_twilio.py::test_status_callbacks_move_forward_only_and_need_a_signature).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import defaultdict
from datetime import timedelta

import pytest
from aiogram import Bot
from sqlalchemy import select

from bot.channels.telegram import TelegramChannel
from bot.channels.twilio import SmsChannel
from bot.channels.twilio.inbound import TwilioInbound
from bot.conversation import Conversation
from bot.http import Server
from engage.clock import SimulatedClock, SystemClock
from fakes.servers import ACCOUNT, AUTH_TOKEN, SERVICE
from fakes.telegram_api import Call, Failure, FakeTelegramAPI
from fakes.twilio_api import FakeTwilioAPI, SmsFailure
from fakes.webhooks import PUBLIC_URL, http_client, post_signed
from scheduler.dispatcher import OutboxSender
from scheduler.ratelimit import ChannelRate
from storage.db import Database
from storage.models import DeliveryEvent, OutboundMessage
from tests.workers.dispatch_support import insert_rows, row
from trial.protocol import Protocol

RETRY_AFTER = 1  # seconds, as Telegram says it (an integer)


async def _rows(db: Database) -> list[OutboundMessage]:
    async with db.read() as session:
        return list((await session.execute(
            select(OutboundMessage).order_by(OutboundMessage.id))).scalars())


async def test_a_429_and_5xx_storm_over_many_chats_delivers_each_message_once(
        sqlite_db: Database, protocol: Protocol, bot: Bot,
        fake_telegram: FakeTelegramAPI) -> None:
    clock = SystemClock()  # retry_after is about real seconds
    chats = [str(800_000 + n) for n in range(60)]
    # What the fake answers each chat before it accepts: a flood-control 429, one or two 5xx,
    # or nothing. (`times` counts the failures, then the chat is served normally.)
    planned: dict[str, int] = {}
    for n, chat in enumerate(chats):
        kind = n % 4
        if kind == 0:
            fake_telegram.fail_chat(chat, Failure(429, f"Too Many Requests: retry after "
                                                       f"{RETRY_AFTER}", RETRY_AFTER, times=1))
        elif kind == 1:
            fake_telegram.fail_chat(chat, Failure(502, "Bad Gateway", times=2))
        elif kind == 2:
            fake_telegram.fail_chat(chat, Failure(500, "Internal Server Error", times=1))
        planned[chat] = (1, 2, 1, 0)[kind]
    ids = await insert_rows(sqlite_db, [row(f"storm:{chat}", address=chat, now=clock.now())
                                        for chat in chats])
    dispatcher = OutboxSender(sqlite_db, protocol, {"telegram": TelegramChannel(bot)}, clock,
                            worker_id="storm", rates={"telegram": ChannelRate(0.0)},
                            backoff_base=0.3, poll_interval=0.05, rng=random.Random(3))
    stop = asyncio.Event()
    started = time.monotonic()
    loop = asyncio.create_task(dispatcher.run(stop))
    try:
        deadline = time.monotonic() + 15
        while {r.status for r in await _rows(sqlite_db)} != {"sent"}:
            assert time.monotonic() < deadline, {r.status for r in await _rows(sqlite_db)}
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.wait_for(loop, 5)

    calls: dict[str, list[Call]] = defaultdict(list)
    for call in fake_telegram.sent("sendMessage"):
        calls[str(call.params["chat_id"])].append(call)
    # Every message reached its chat exactly once: the failures, then one accepted send, and
    # nothing more (no blind resend of anything the provider accepted).
    assert {chat: len(calls[chat]) for chat in chats} == {c: planned[c] + 1 for c in chats}
    rows = await _rows(sqlite_db)
    assert [r.id for r in rows] == ids
    assert all(r.status == "sent" and r.provider_id for r in rows)
    assert all((r.provider_id or "").startswith(f"{r.address}:") for r in rows)
    flooded = [c for n, c in enumerate(chats) if n % 4 == 0]
    # A 429 does not use up an attempt (waiting as told is no failure); a 5xx does.
    assert {r.address: r.attempts for r in rows} == {
        c: 1 if c in flooded else planned[c] + 1 for c in chats}

    # retry_after is honoured: the chat was not tried again before it said...
    for chat in flooded:
        refused, accepted = calls[chat]
        assert accepted.at - refused.at >= RETRY_AFTER - 0.02, chat
    # ...and the whole bot held back meanwhile (a 429 is about the bot, not just one chat):
    # once the first 429 was answered, nothing went out until retry_after had passed, not
    # even the 5xx retries (their backoff, up to 0.3 s, would otherwise fall in this window).
    first_429 = min(calls[c][0].at for c in flooded)
    quiet = [c for c in fake_telegram.sent("sendMessage")
             if first_429 + 0.1 < c.at < first_429 + RETRY_AFTER - 0.05]
    assert quiet == []
    assert time.monotonic() - started < 10


@pytest.mark.parametrize("where", ["client timeout", "dispatcher timeout"])
async def test_a_twilio_timeout_after_the_send_leaves_the_row_unknown_and_never_resends_it(
        db: Database, protocol: Protocol, fake_twilio: FakeTwilioAPI,
        where: str) -> None:
    clock = SimulatedClock(SystemClock().now())
    phone = "+8613800000999"
    # Twilio takes the message, then does not answer within our timeout.
    fake_twilio.fail_number(phone, SmsFailure(status=201, delay=1.0, times=1))
    sms = SmsChannel(account_sid=ACCOUNT, auth_token=AUTH_TOKEN, api_url=fake_twilio.base_url,
                     status_callback=f"{PUBLIC_URL}/twilio/status",
                     messaging_service_sid=SERVICE,
                     timeout=0.3 if where == "client timeout" else 15.0)
    (message_id,) = await insert_rows(db, [row("dose:reminder:1", address=phone, channel="sms",
                                               now=clock.now())])
    dispatcher = OutboxSender(db, protocol, {"sms": sms}, clock, worker_id="w",
                            rates={"sms": ChannelRate(0.0)},
                            send_timeout=0.3 if where == "dispatcher timeout" else None)
    try:
        assert await dispatcher.run_once() == 1
        (sent,) = await _rows(db)
        assert (sent.status, sent.provider_id, sent.attempts) == ("unknown", None, 1)
        assert "maybe sent" in (sent.last_error or "")
        # Hours of dispatching later, still one request to Twilio: never sent again blindly.
        for _ in range(3):
            clock.advance(timedelta(hours=1))
            assert await dispatcher.run_once() == 0
        await asyncio.sleep(1.0)  # the stalled answer arrives at the fake's end
        (request,) = [r for r in fake_twilio.requests if r.params.get("To") == phone]
        assert request.sid is not None  # Twilio did take it
        assert request.params["StatusCallback"].endswith(f"?message_id={message_id}")
    finally:
        await sms.close()

    # Twilio's status callback, matched by the outbox id in its URL, settles the row.
    server = Server(db=db, routes=TwilioInbound(Conversation(db, protocol, clock), db, clock,
                                                PUBLIC_URL, AUTH_TOKEN).routes())
    path = request.params["StatusCallback"].removeprefix(PUBLIC_URL)
    async with http_client(server) as client:
        for status in ("sent", "delivered"):
            response = await post_signed(client, path, {
                "MessageSid": request.sid, "MessageStatus": status, "AccountSid": ACCOUNT},
                AUTH_TOKEN)
            assert response.status == 204
    (settled,) = await _rows(db)
    assert (settled.status, settled.provider_id) == ("delivered", request.sid)
    async with db.read() as session:
        events = [e.status for e in (await session.execute(select(DeliveryEvent).where(
            DeliveryEvent.message_id == message_id).order_by(DeliveryEvent.id))).scalars()]
    assert events == ["unknown", "sent", "delivered"]
    assert len([r for r in fake_twilio.requests if r.params.get("To") == phone]) == 1

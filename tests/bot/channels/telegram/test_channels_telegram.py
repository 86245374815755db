"""Telegram end to end: the real aiogram Bot against the fake Bot API on 127.0.0.1."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest
from aiogram import Bot
from sqlalchemy import func, select

from bot.channels.telegram import (
    TelegramChannel,
    TelegramPoller,
    build_dispatcher,
    callback_data,
)
from bot.conversation import Conversation
from engage.clock import SimulatedClock
from fakes.servers import outbox_sender
from fakes.telegram_api import Failure, FakeTelegramAPI
from messages.channel import Choice, OutgoingMessage, PermanentSendError, TransientSendError
from scheduler.doses import plan_doses
from storage import outbox
from storage.db import Database
from storage.migrate import upgrade
from storage.models import DoseRecord, InboundMessage, Patient
from study.dose_answers import dose_choices
from tests.factories import add_site, enrol
from trial.protocol import Protocol


class Polling:
    """The poller running in the background for one test."""

    def __init__(self, bot: Bot, core: Conversation, clock: SimulatedClock) -> None:
        self.poller = TelegramPoller(bot, build_dispatcher(core, clock), timeout=1,
                                     retry_seconds=0.05)
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(self.poller.run(self.stop))

    async def handled(self, update_id: int, fake: FakeTelegramAPI, within: float = 5.0) -> None:
        """Wait until an update is confirmed (stored) and everything taken is handled."""
        await fake.wait_confirmed(update_id, within=within)
        await asyncio.wait_for(self.poller.idle(), within)

    async def close(self) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, 5)


async def test_link_remind_press_taken_and_see_the_dose_recorded(
        db: Database, protocol: Protocol, clock: SimulatedClock, bot: Bot,
        fake_telegram: FakeTelegramAPI) -> None:
    await add_site(db, clock.now())
    enrolled = await enrol(db, protocol, clock.now())
    sender = outbox_sender(db, protocol, {"telegram": TelegramChannel(bot)}, clock)
    core = Conversation(db, protocol, clock, wake=sender.wake)
    polling = Polling(bot, core, clock)
    try:
        # 1. Link by the deep link's /start CODE.
        update = fake_telegram.inject(fake_telegram.message_update(555, f"/start {enrolled.code}"))
        await polling.handled(update, fake_telegram)
        async with db.read() as session:
            assert (await session.get(Patient, enrolled.patient_id)).telegram_id == 555  # type: ignore[union-attr]
        assert await sender.run_once() == 1
        assert "connected" in fake_telegram.sent("sendMessage", 555)[-1].params["text"]

        # 2. A reminder with buttons.
        await plan_doses(db, protocol, clock.now())
        async with db.write() as session:
            dose = (await session.execute(select(DoseRecord).order_by(DoseRecord.due_at))
                    ).scalars().first()
            assert dose is not None
            choices = [{"label": c.label, "action": c.action, "sms_word": c.sms_word}
                       for c in dose_choices(dose.id, "en")]
            await outbox.enqueue(session, key=f"dose:reminder:{dose.id}", channel="telegram",
                                 address="555", template_id="dose.reminder",
                                 template_version="t", language="en", body="Time for your dose",
                                 due_at=clock.now(), now=clock.now(), choices=choices,
                                 patient_id=enrolled.patient_id, dose_id=dose.id)
        assert await sender.run_once() >= 1
        # The reminder of that dose (the planner may have queued it already, under its key).
        reminder = next(c for c in fake_telegram.sent("sendMessage", 555)
                        if f"dose:taken:{dose.id}" in str(c.params.get("reply_markup")))
        buttons = [b for row in reminder.params["reply_markup"]["inline_keyboard"] for b in row]
        assert [b["callback_data"] for b in buttons] == [c["action"] for c in choices]
        assert buttons[0]["text"] == choices[0]["label"]

        # 3. Press Taken.
        clock.advance(timedelta(minutes=3))
        taken = next(b["callback_data"] for b in buttons if b["callback_data"].startswith(
            "dose:taken:"))
        update = fake_telegram.inject(fake_telegram.callback_update(555, taken, message_id=7))
        await polling.handled(update, fake_telegram)
        async with db.read() as session:
            recorded = await session.get(DoseRecord, dose.id)
        assert recorded is not None
        assert recorded.state == "taken"
        assert fake_telegram.sent("answerCallbackQuery")
        edit = fake_telegram.sent("editMessageReplyMarkup")[-1]
        assert edit.params["message_id"] == "7"
        assert await sender.run_once() == 1  # the confirmation
    finally:
        await polling.close()


async def test_an_update_is_not_confirmed_before_its_handling_is_committed(
        tmp_path: Path, protocol: Protocol, clock: SimulatedClock, bot: Bot,
        fake_telegram: FakeTelegramAPI) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'not-yet-migrated.db'}")
    core = Conversation(db, protocol, clock)
    polling = Polling(bot, core, clock)
    try:
        update = fake_telegram.inject(fake_telegram.message_update(42, "hello"))
        await asyncio.sleep(0.5)  # handling fails (no tables): retried, never confirmed
        assert fake_telegram.confirmed_offset <= update
        assert any(u["update_id"] == update for u in fake_telegram.updates)
        await upgrade(db.engine)
        await polling.handled(update, fake_telegram)
        async with db.read() as session:
            assert (await session.execute(select(func.count()).select_from(InboundMessage))
                    ).scalar_one() == 1
    finally:
        await polling.close()
        await db.dispose()


async def test_a_replayed_update_id_is_handled_once(
        sqlite_db: Database, protocol: Protocol, clock: SimulatedClock, bot: Bot,
        fake_telegram: FakeTelegramAPI) -> None:
    core = Conversation(sqlite_db, protocol, clock)
    update = fake_telegram.message_update(42, "hello", update_id=5000)
    handled = await asyncio.gather(*(core.handle(_event(update, clock)) for _ in range(10)))
    assert sum(not h.duplicate for h in handled) == 1


def _event(update: dict, clock: SimulatedClock):  # type: ignore[no-untyped-def]
    from bot.conversation import InboundEvent

    message = update["message"]
    return InboundEvent("telegram", str(update["update_id"]), str(message["from"]["id"]),
                        message["text"], None, clock.now(), {"chat_id": message["chat"]["id"]})


async def test_send_errors_map_to_the_channel_contract(
        bot: Bot, fake_telegram: FakeTelegramAPI) -> None:
    channel = TelegramChannel(bot)
    message = OutgoingMessage(1, "601", "hello")
    fake_telegram.fail_chat(601, Failure(429, "Too Many Requests: retry after 3", 3))
    with pytest.raises(TransientSendError) as flood:
        await channel.send(message)
    assert flood.value.retry_after == 3
    fake_telegram.fail_chat(601, Failure(502, "Bad Gateway"))
    with pytest.raises(TransientSendError):
        await channel.send(message)
    fake_telegram.fail_chat(601, Failure(403, "Forbidden: bot was blocked by the user"))
    with pytest.raises(PermanentSendError) as blocked:
        await channel.send(message)
    assert blocked.value.unreachable
    assert not blocked.value.opted_out
    fake_telegram.fail_chat(601, Failure(400, "Bad Request: chat not found"))
    with pytest.raises(PermanentSendError) as missing:
        await channel.send(message)
    assert missing.value.unreachable
    del fake_telegram.failures["601"]
    result = await channel.send(message)
    assert result.provider_id.startswith("601:")


async def test_buttons_and_pictures(bot: Bot, fake_telegram: FakeTelegramAPI) -> None:
    channel = TelegramChannel(bot)
    choices = (Choice("Taken", "dose:taken:12", "TAKEN"), Choice("中文", "lang:zh", "LANG ZH"),
               Choice("Ack", "alert:ack:3"), Choice("Next", "page:adherence BJ01:2"))
    await channel.send(OutgoingMessage(2, "602", "Your week", choices=choices,
                                       image=b"\x89PNG fake"))
    (photo,) = fake_telegram.sent("sendPhoto", 602)
    assert photo.files["photo"] == b"\x89PNG fake"
    assert photo.params["caption"] == "Your week"
    data = [b["callback_data"] for row in photo.params["reply_markup"]["inline_keyboard"]
            for b in row]
    assert data == ["dose:taken:12", "lang:zh", "alert:ack:3", "page:adherence BJ01:2"]


def test_callback_data_factories_keep_actions_and_the_64_byte_limit() -> None:
    assert callback_data("q:2:yes") == "q:2:yes"
    with pytest.raises(ValueError):
        callback_data("page:" + "x" * 70 + ":1")
    with pytest.raises(ValueError):
        callback_data("dose:taken:notanumber")
    with pytest.raises(ValueError):
        callback_data("nobody:1")

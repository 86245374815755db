"""Opt-out and unreachable recipients across the real clients: 21610, a blocked bot, and a
safety message that falls back to SMS."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from sqlalchemy import select

from bot.channels.telegram import TelegramChannel, make_bot
from bot.channels.twilio import SmsChannel
from bot.conversation import Conversation, InboundEvent
from engage.clock import SimulatedClock
from fakes.servers import ACCOUNT, AUTH_TOKEN, SERVICE, TOKEN, outbox_sender
from fakes.telegram_api import Failure, FakeTelegramAPI
from fakes.twilio_api import FakeTwilioAPI, SmsFailure
from storage import outbox
from storage.db import Database
from storage.models import Alert, OutboundMessage
from tests.factories import Enrolled, add_site, add_staff, enrol, read_patient
from trial.protocol import Protocol

PHONE = "+8613800000001"
CHAT = 555


@dataclass
class Channels:
    telegram: TelegramChannel
    sms: SmsChannel


@pytest.fixture
async def channels(fake_telegram: FakeTelegramAPI,
                   fake_twilio: FakeTwilioAPI) -> AsyncIterator[Channels]:
    bot = make_bot(TOKEN, fake_telegram.base_url)
    sms = SmsChannel(account_sid=ACCOUNT, auth_token=AUTH_TOKEN, api_url=fake_twilio.base_url,
                     status_callback="https://engage.example.org/twilio/status",
                     messaging_service_sid=SERVICE)
    yield Channels(TelegramChannel(bot), sms)
    await sms.close()
    await bot.session.close()


async def linked_patient(db: Database, protocol: Protocol, clock: SimulatedClock) -> Enrolled:
    await add_site(db, clock.now())
    await add_staff(db, clock.now(), telegram_id=9001)
    enrolled = await enrol(db, protocol, clock.now(), phone=PHONE)
    core = Conversation(db, protocol, clock)
    await core.handle(InboundEvent("telegram", "1", str(CHAT), f"/start {enrolled.code}", None,
                                   clock.now(), {"chat_id": CHAT}))
    async with db.write() as session:  # the link confirmation is not what these tests are about
        for row in (await session.execute(select(OutboundMessage))).scalars():
            row.status = "sent"
    return enrolled


async def queue(db: Database, clock: SimulatedClock, patient_id: int, channel: str,
                address: str, *, lane: str = outbox.ROUTINE, key: str = "notice:test:1") -> None:
    async with db.write() as session:
        await outbox.enqueue(session, key=key, channel=channel, address=address,
                             template_id="chat.help_no_phone", template_version="v",
                             language="en", body="Please call us.", due_at=clock.now(),
                             now=clock.now(), lane=lane, patient_id=patient_id)


async def alerts(db: Database) -> list[Alert]:
    async with db.read() as session:
        return list((await session.execute(select(Alert))).scalars())


async def test_21610_on_send_means_opted_out_and_the_coordinator_is_told(
        sqlite_db: Database, protocol: Protocol, clock: SimulatedClock, channels: Channels,
        fake_twilio: FakeTwilioAPI, fake_telegram: FakeTelegramAPI) -> None:
    enrolled = await enrol_sms_only(sqlite_db, protocol, clock)
    fake_twilio.fail_number(PHONE, SmsFailure(400, 21610))
    await queue(sqlite_db, clock, enrolled.patient_id, "sms", PHONE)
    sender = outbox_sender(sqlite_db, protocol, {"sms": channels.sms,
                                              "telegram": channels.telegram}, clock)
    await sender.run_once()
    assert (await read_patient(sqlite_db, enrolled.patient_id)).opted_out is True
    assert [a.patient_id for a in await alerts(sqlite_db)] == [enrolled.patient_id]
    await sender.run_once()
    assert fake_telegram.sent("sendMessage", 9001)  # the coordinator heard of it


async def enrol_sms_only(db: Database, protocol: Protocol, clock: SimulatedClock) -> Enrolled:
    await add_site(db, clock.now())
    await add_staff(db, clock.now(), telegram_id=9001)
    return await enrol(db, protocol, clock.now(), phone=PHONE)


async def test_a_blocked_bot_marks_the_chat_unreachable_and_tells_the_coordinator(
        sqlite_db: Database, protocol: Protocol, clock: SimulatedClock, channels: Channels,
        fake_telegram: FakeTelegramAPI) -> None:
    enrolled = await linked_patient(sqlite_db, protocol, clock)
    fake_telegram.fail_chat(CHAT, Failure(403, "Forbidden: bot was blocked by the user"))
    await queue(sqlite_db, clock, enrolled.patient_id, "telegram", str(CHAT))
    sender = outbox_sender(sqlite_db, protocol, {"sms": channels.sms,
                                              "telegram": channels.telegram}, clock)
    await sender.run_once()
    row = await read_patient(sqlite_db, enrolled.patient_id)
    assert row.telegram_reachable is False
    assert row.opted_out is False
    assert len(await alerts(sqlite_db)) == 1
    await sender.run_once()
    assert fake_telegram.sent("sendMessage", 9001)


async def test_a_safety_message_to_a_patient_who_blocked_the_bot_goes_by_sms(
        db: Database, protocol: Protocol, clock: SimulatedClock, channels: Channels,
        fake_telegram: FakeTelegramAPI, fake_twilio: FakeTwilioAPI) -> None:
    enrolled = await linked_patient(db, protocol, clock)
    fake_telegram.fail_chat(CHAT, Failure(403, "Forbidden: bot was blocked by the user"))
    await queue(db, clock, enrolled.patient_id, "telegram", str(CHAT), lane=outbox.SAFETY,
                key="reply:99:0")
    sender = outbox_sender(db, protocol, {"sms": channels.sms, "telegram": channels.telegram},
                        clock)
    for _ in range(3):
        await sender.run_once()
    (sms,) = fake_twilio.sent_to(PHONE)
    assert sms.params["Body"] == "Please call us.\nSite"  # signed, as every patient SMS
    assert (await read_patient(db, enrolled.patient_id)).telegram_reachable is False


async def test_the_stop_confirmation_is_delivered_and_then_nothing_routine(
        sqlite_db: Database, protocol: Protocol, clock: SimulatedClock, channels: Channels,
        fake_twilio: FakeTwilioAPI) -> None:
    enrolled = await enrol_sms_only(sqlite_db, protocol, clock)
    core = Conversation(sqlite_db, protocol, clock)
    await core.handle(InboundEvent("sms", "SM1", PHONE, "退订", None, clock.now()))
    await queue(sqlite_db, clock, enrolled.patient_id, "sms", PHONE)  # a routine notice
    sender = outbox_sender(sqlite_db, protocol, {"sms": channels.sms,
                                              "telegram": channels.telegram}, clock)
    await sender.run_once()
    bodies = [r.params["Body"] for r in fake_twilio.sent_to(PHONE)]
    assert bodies == ["Messages are paused. You are still in the study. Reply START to resume."
                      "\nSite"]  # signed with the site's name
    await core.handle(InboundEvent("sms", "SM2", PHONE, "START", None, clock.now()))
    assert (await read_patient(sqlite_db, enrolled.patient_id)).opted_out is False

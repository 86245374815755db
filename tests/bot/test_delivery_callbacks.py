"""Twilio status callbacks through the real twilio client, the real dispatcher and our HTTP
server: only a status the outbox accepts has consequences for the patient, a callback for a
send still in flight is kept and applied, and a safety SMS the carrier later fails goes again
by the patient's other channel with the coordinator told."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import datetime

import pytest
from aiogram import Bot
from sqlalchemy import select

from bot.channels.telegram import TelegramChannel
from bot.channels.twilio import SmsChannel
from bot.channels.twilio.inbound import TwilioInbound
from bot.conversation import Conversation
from bot.http import Server
from engage.clock import SimulatedClock
from fakes.servers import ACCOUNT, AUTH_TOKEN, outbox_sender
from fakes.telegram_api import FakeTelegramAPI
from fakes.twilio_api import FakeTwilioAPI, SmsFailure, SmsRequest
from fakes.webhooks import PUBLIC_URL, http_client, post_signed
from messages.channel import Channel
from storage.db import Database
from storage.models import Alert, DeliveryEvent, OutboundMessage, Patient
from tests.workers.dispatch_support import (
    COORDINATOR_CHAT,
    add_patient,
    insert_rows,
    message,
    row,
    seed_site,
)
from trial.protocol import Protocol

PHONE = "+8613800000123"
TELEGRAM_ID = 4242



def server(db: Database, protocol: Protocol, clock: SimulatedClock) -> Server:
    return Server(db=db, routes=TwilioInbound(Conversation(db, protocol, clock), db, clock,
                                              PUBLIC_URL, AUTH_TOKEN).routes())


async def _patient(db: Database, now: datetime, *, telegram: bool = False) -> int:
    await seed_site(db, now)
    return await add_patient(db, now, "S001", telegram_id=TELEGRAM_ID if telegram else None,
                             phone=PHONE)


async def _callbacks(db: Database, protocol: Protocol, clock: SimulatedClock,
                     sent_params: dict[str, str], sid: str,
                     *statuses: tuple[str, str]) -> None:
    path = sent_params["StatusCallback"].removeprefix(PUBLIC_URL)
    async with http_client(server(db, protocol, clock)) as client:
        for status, code in statuses:
            form = {"MessageSid": sid, "MessageStatus": status, "AccountSid": ACCOUNT}
            if code:
                form["ErrorCode"] = code
            assert (await post_signed(client, path, form, AUTH_TOKEN)).status == 204


async def _safety_sms_sent(db: Database, protocol: Protocol, clock: SimulatedClock,
                           channels: Mapping[str, Channel], fake_twilio: FakeTwilioAPI,
                           patient_id: int) -> SmsRequest:
    """A safety reply to the patient queued by SMS and sent once: what Twilio accepted."""
    await insert_rows(db, [row(
        "reply:9:0", address=PHONE, channel="sms", lane="safety",
        template_id="report.urgent_ack", patient_id=patient_id, now=clock.now())])
    assert await outbox_sender(db, protocol, channels, clock).run_once() == 1
    (sent,) = fake_twilio.sent_to(PHONE)
    assert sent.sid is not None
    return sent


async def _state(db: Database, patient_id: int) -> tuple[Patient, list[OutboundMessage],
                                                          list[Alert]]:
    async with db.read() as session:
        patient = await session.get(Patient, patient_id)
        assert patient is not None
        rows = list((await session.execute(
            select(OutboundMessage).order_by(OutboundMessage.id))).scalars())
        alerts = list((await session.execute(select(Alert))).scalars())
    return patient, rows, alerts


@pytest.mark.parametrize("lane", ["routine", "safety"])
async def test_failed_and_undelivered_after_delivered_change_neither_message_nor_patient(
        db: Database, protocol: Protocol, clock: SimulatedClock, sms: SmsChannel,
        fake_twilio: FakeTwilioAPI, lane: str) -> None:
    patient_id = await _patient(db, clock.now(), telegram=True)
    (message_id,) = await insert_rows(db, [row(
        "reply:1:0", address=PHONE, channel="sms", lane=lane, template_id="report.urgent_ack",
        patient_id=patient_id, now=clock.now())])
    assert await outbox_sender(db, protocol, {"sms": sms}, clock).run_once() == 1
    (sent,) = fake_twilio.sent_to(PHONE)
    assert sent.sid is not None

    await _callbacks(db, protocol, clock, sent.params, sent.sid, ("delivered", ""),
                     ("undelivered", "30005"), ("failed", "21610"))

    patient, rows, alerts = await _state(db, patient_id)
    assert [(r.id, r.status) for r in rows] == [(message_id, "delivered")]  # nothing rerouted
    assert (patient.opted_out, patient.sms_reachable, patient.telegram_reachable) == (
        False, True, True)
    assert alerts == []
    async with db.read() as session:
        events = list((await session.execute(select(DeliveryEvent.status).where(
            DeliveryEvent.message_id == message_id).order_by(DeliveryEvent.id))).scalars())
    assert events == ["sent", "delivered", "callback", "callback"]


async def test_a_callback_while_the_send_is_in_flight_is_kept_and_applied(
        sqlite_db: Database, protocol: Protocol, clock: SimulatedClock, sms: SmsChannel,
        fake_twilio: FakeTwilioAPI) -> None:
    patient_id = await _patient(sqlite_db, clock.now())
    (message_id,) = await insert_rows(sqlite_db, [row(
        "dose:reminder:1", address=PHONE, channel="sms", patient_id=patient_id,
        now=clock.now())])
    # Twilio takes the message and reports it delivered before its answer to us arrives.
    fake_twilio.fail_number(PHONE, SmsFailure(status=201, delay=0.5, times=1))
    sending = asyncio.create_task(outbox_sender(sqlite_db, protocol, {"sms": sms},
                                             clock).run_once())
    (sent,) = await fake_twilio.wait_for(1)
    assert sent.sid is not None
    await _callbacks(sqlite_db, protocol, clock, sent.params, sent.sid, ("delivered", ""))
    assert (await message(sqlite_db, message_id)).status == "sending"
    assert await sending == 1

    settled = await message(sqlite_db, message_id)
    assert (settled.status, settled.provider_id) == ("delivered", sent.sid)
    async with sqlite_db.read() as session:
        events = list((await session.execute(select(DeliveryEvent.status).where(
            DeliveryEvent.message_id == message_id).order_by(DeliveryEvent.id))).scalars())
    assert events == ["early callback", "sent", "delivered"]


@pytest.mark.parametrize(("status", "code"), [("failed", "30003"), ("undelivered", "63018")])
async def test_a_safety_sms_failed_later_goes_again_by_telegram_and_the_coordinator_is_told(
        sqlite_db: Database, protocol: Protocol, clock: SimulatedClock, sms: SmsChannel,
        bot: Bot, fake_twilio: FakeTwilioAPI, fake_telegram: FakeTelegramAPI, status: str,
        code: str) -> None:
    patient_id = await _patient(sqlite_db, clock.now(), telegram=True)
    channels = {"sms": sms, "telegram": TelegramChannel(bot)}
    sent = await _safety_sms_sent(sqlite_db, protocol, clock, channels, fake_twilio, patient_id)

    await _callbacks(sqlite_db, protocol, clock, sent.params, sent.sid, ("sent", ""),
                     (status, code))
    assert await outbox_sender(sqlite_db, protocol, channels, clock).run_once() == 2

    patient, rows, alerts = await _state(sqlite_db, patient_id)
    by_key = {r.dedupe_key: r for r in rows}
    assert by_key["reply:9:0"].status == status
    again = by_key["reply:9:0:via:telegram"]
    assert (again.channel, again.address, again.lane, again.status) == (
        "telegram", str(TELEGRAM_ID), "safety", "sent")
    # The number may work again (handset off, a carrier's rate limit): SMS is not given up.
    assert (patient.sms_reachable, patient.opted_out) == (True, False)
    assert [a.kind for a in alerts] == ["delivery_failed"]
    texts = {int(c.params["chat_id"]): str(c.params["text"])
             for c in fake_telegram.sent("sendMessage")}
    assert texts[TELEGRAM_ID] == "text of reply:9:0"
    assert "could not be delivered by SMS" in texts[COORDINATOR_CHAT]
    assert "sent again" in texts[COORDINATOR_CHAT]


async def test_a_safety_sms_failed_later_with_no_other_channel_tells_the_coordinator(
        sqlite_db: Database, protocol: Protocol, clock: SimulatedClock, sms: SmsChannel,
        bot: Bot, fake_twilio: FakeTwilioAPI, fake_telegram: FakeTelegramAPI) -> None:
    patient_id = await _patient(sqlite_db, clock.now())
    channels = {"sms": sms, "telegram": TelegramChannel(bot)}
    sent = await _safety_sms_sent(sqlite_db, protocol, clock, channels, fake_twilio, patient_id)
    await _callbacks(sqlite_db, protocol, clock, sent.params, sent.sid, ("failed", "30003"))
    assert await outbox_sender(sqlite_db, protocol, channels, clock).run_once() == 1
    _, rows, _ = await _state(sqlite_db, patient_id)
    assert [r.dedupe_key for r in rows if r.patient_id == patient_id] == ["reply:9:0"]
    (notice,) = [c for c in fake_telegram.sent("sendMessage")
                 if int(c.params["chat_id"]) == COORDINATOR_CHAT]
    assert "no other channel" in str(notice.params["text"])


async def test_a_routine_sms_failed_later_with_a_transient_code_changes_nothing_else(
        sqlite_db: Database, protocol: Protocol, clock: SimulatedClock, sms: SmsChannel,
        fake_twilio: FakeTwilioAPI) -> None:
    patient_id = await _patient(sqlite_db, clock.now(), telegram=True)
    await insert_rows(sqlite_db, [row("dose:reminder:3", address=PHONE, channel="sms",
                                      patient_id=patient_id, now=clock.now())])
    assert await outbox_sender(sqlite_db, protocol, {"sms": sms}, clock).run_once() == 1
    (sent,) = fake_twilio.sent_to(PHONE)
    assert sent.sid is not None
    await _callbacks(sqlite_db, protocol, clock, sent.params, sent.sid, ("failed", "30003"))
    patient, rows, alerts = await _state(sqlite_db, patient_id)
    assert [r.status for r in rows] == ["failed"]
    assert (patient.sms_reachable, alerts) == (True, [])

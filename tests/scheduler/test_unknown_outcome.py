"""Issue 15, acceptance 9: a safety message whose send timed out after the provider took it
(state `unknown`) is not lost. Within a simulated minute the dispatcher asks Twilio's message
list whether it went (found: recorded, no duplicate; not there: sent again), sends a Telegram one
again (Telegram cannot be asked), and tells the coordinator when it still cannot be confirmed.
A routine one stays unknown (tests/e2e/test_reliability_delivery.py,
tests/scheduler/test_dispatch_policy.py);
`engage outbox unknown` lists such rows and `engage outbox requeue ID` sends one again.

Through the real twilio and aiogram clients against the fakes, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from aiogram import Bot
from sqlalchemy import select

from bot.channels.telegram import TelegramChannel
from bot.channels.twilio import SmsChannel
from bot.conversation import Conversation, InboundEvent
from engage.clock import SimulatedClock, SystemClock
from fakes.servers import ACCOUNT, AUTH_TOKEN, SERVICE
from fakes.telegram_api import FakeTelegramAPI
from fakes.twilio_api import FakeTwilioAPI, SmsFailure
from fakes.webhooks import PUBLIC_URL
from messages import catalogue
from scheduler.dispatcher import OutboxSender
from scheduler.ratelimit import ChannelRate
from storage import outbox
from storage.db import Database
from storage.models import Alert, AuditEntry, DeliveryEvent, OutboundMessage
from study import digest
from tests import factories as people
from tests.cli.support import fetch, run_cli
from tests.workers.dispatch_support import insert_rows, row
from trial.protocol import Protocol

PHONE = "+8613800000123"
COORDINATOR = 9001
PATIENT_CHAT = 777_001
EMERGENCY = "我胸口剧痛，喘不上气"
LATE = 1.0  # seconds the fake takes to answer a send it has taken (our timeout is 0.3 s)


@pytest.fixture
async def twilio(clock: SimulatedClock) -> AsyncIterator[FakeTwilioAPI]:
    """The fake Twilio, stamping messages with the test's simulated time."""
    api = FakeTwilioAPI(clock=clock.now)
    await api.start()
    yield api
    await api.stop()


@pytest.fixture
async def sms(twilio: FakeTwilioAPI) -> AsyncIterator[SmsChannel]:
    channel = SmsChannel(account_sid=ACCOUNT, auth_token=AUTH_TOKEN, api_url=twilio.base_url,
                         status_callback=f"{PUBLIC_URL}/twilio/status",
                         messaging_service_sid=SERVICE, timeout=0.3)
    yield channel
    await channel.close()


def _dispatcher(db: Database, protocol: Protocol, clock: SimulatedClock, sms: SmsChannel,
                bot: Bot) -> OutboxSender:
    return OutboxSender(db, protocol, {"sms": sms, "telegram": TelegramChannel(bot)}, clock,
                      worker_id="w", rates={"sms": ChannelRate(0.0),
                                            "telegram": ChannelRate(0.0)},
                      send_timeout=0.3)


async def _emergency_by_sms(db: Database, protocol: Protocol, clock: SimulatedClock) -> int:
    """A patient with a phone texts an emergency; returns the id of the safety reply queued."""
    await people.add_site(db, clock.now())
    await people.add_staff(db, clock.now(), telegram_id=COORDINATOR)
    await people.enrol(db, protocol, clock.now(), phone=PHONE)
    await Conversation(db, protocol, clock).handle(InboundEvent(
        "sms", "SM" + "9" * 32, PHONE, EMERGENCY, None, clock.now(), {}))
    return await _reply_id(db)


async def _reply_ids(db: Database) -> list[int]:
    async with db.read() as session:
        return list((await session.execute(select(OutboundMessage.id).where(
            OutboundMessage.template_id == "report.reply_emergency"))).scalars())


async def _reply_id(db: Database) -> int:
    (reply,) = await _reply_ids(db)
    return reply


async def _row(db: Database, message_id: int) -> OutboundMessage:
    async with db.read() as session:
        found = await session.get(OutboundMessage, message_id)
        assert found is not None
        return found


async def _events(db: Database, message_id: int) -> list[str]:
    async with db.read() as session:
        return list((await session.execute(select(DeliveryEvent.status).where(
            DeliveryEvent.message_id == message_id).order_by(DeliveryEvent.id))).scalars())


def _emergency_text() -> str:
    return catalogue.render("report.reply_emergency", "en")


def _to_patient(twilio: FakeTwilioAPI) -> list[str]:
    """The bodies Twilio took for the patient's number (each one reached the phone)."""
    return [r.params["Body"] for r in twilio.sent_to(PHONE)]


def _notices(fake_telegram: FakeTelegramAPI) -> list[str]:
    """Texts to the coordinator saying a safety message could not be confirmed."""
    marker = catalogue.render("delivery.unconfirmed", "en", subject="S001", channel="SMS",
                              message=0, reason="x").split(" by ")[0]
    return [c.params["text"] for c in fake_telegram.sent("sendMessage", COORDINATOR)
            if c.params["text"].startswith(marker)]


async def test_twilio_took_the_emergency_sms_and_says_so_no_duplicate(
        db: Database, protocol: Protocol, clock: SimulatedClock, twilio: FakeTwilioAPI,
        sms: SmsChannel, bot: Bot, fake_telegram: FakeTelegramAPI) -> None:
    reply = await _emergency_by_sms(db, protocol, clock)
    twilio.fail_number(PHONE, SmsFailure(status=201, delay=LATE, times=1))  # taken, answered late
    dispatcher = _dispatcher(db, protocol, clock, sms, bot)
    await dispatcher.run_once()
    first = await _row(db, reply)
    assert (first.status, first.lane, first.provider_id) == ("unknown", "safety", None)
    (taken,) = twilio.sent_to(PHONE)

    clock.advance(timedelta(seconds=10))  # within a (simulated) minute
    await dispatcher.run_once()
    settled = await _row(db, reply)
    assert (settled.status, settled.provider_id) == ("sent", taken.sid)
    assert len(_to_patient(twilio)) == 1  # Twilio had it: not sent again
    assert [q["To"] for q in twilio.list_queries] == [PHONE]
    assert await _events(db, reply) == ["unknown", "recheck", "sent"]
    assert _notices(fake_telegram) == []
    await asyncio.sleep(LATE)  # the fake's late answer ends before the server stops


async def test_twilio_has_no_record_so_the_emergency_sms_goes_again_once(
        db: Database, protocol: Protocol, clock: SimulatedClock, twilio: FakeTwilioAPI,
        sms: SmsChannel, bot: Bot, fake_telegram: FakeTelegramAPI) -> None:
    reply = await _emergency_by_sms(db, protocol, clock)
    # The request was written, then nothing: Twilio never created the message.
    twilio.fail_number(PHONE, SmsFailure(status=500, delay=LATE, times=1))
    dispatcher = _dispatcher(db, protocol, clock, sms, bot)
    await dispatcher.run_once()
    assert (await _row(db, reply)).status == "unknown"
    assert _to_patient(twilio) == []
    for _ in range(6):  # a minute, a look every 10 s
        clock.advance(timedelta(seconds=10))
        await dispatcher.run_once()
    settled = await _row(db, reply)
    assert settled.status == "sent"
    (body,) = _to_patient(twilio)  # sent again once: the patient has it, no duplicate
    assert body.startswith(_emergency_text())
    assert await _events(db, reply) == ["unknown", "recheck", "recheck", "sent"]
    assert _notices(fake_telegram) == []
    await asyncio.sleep(LATE)


async def test_yesterdays_identical_emergency_sms_is_not_taken_for_todays(
        db: Database, protocol: Protocol, clock: SimulatedClock, twilio: FakeTwilioAPI,
        sms: SmsChannel, bot: Bot) -> None:
    yesterday = await _emergency_by_sms(db, protocol, clock)
    dispatcher = _dispatcher(db, protocol, clock, sms, bot)
    await dispatcher.run_once()
    assert (await _row(db, yesterday)).status == "sent"
    clock.advance(timedelta(days=1))
    await Conversation(db, protocol, clock).handle(InboundEvent(
        "sms", "SM" + "8" * 32, PHONE, EMERGENCY, None, clock.now(), {}))
    today = max(await _reply_ids(db))
    twilio.fail_number(PHONE, SmsFailure(status=500, delay=LATE, times=1))  # never created
    await dispatcher.run_once()
    assert (await _row(db, today)).status == "unknown"
    clock.advance(timedelta(seconds=10))
    await dispatcher.run_once()
    # Twilio lists yesterday's message with the very same text: not today's, so sent again.
    first, second = twilio.sent_to(PHONE)
    assert first.params["Body"] == second.params["Body"]
    settled = await _row(db, today)
    assert (settled.status, settled.provider_id) == ("sent", second.sid)
    await asyncio.sleep(LATE)


async def test_a_provider_that_cannot_confirm_gets_one_more_copy_and_the_coordinator_is_told(
        db: Database, protocol: Protocol, clock: SimulatedClock, twilio: FakeTwilioAPI,
        sms: SmsChannel, bot: Bot, fake_telegram: FakeTelegramAPI) -> None:
    reply = await _emergency_by_sms(db, protocol, clock)
    started = clock.now()
    twilio.fail_number(PHONE, SmsFailure(status=201, delay=LATE))  # every send answered late
    twilio.fail_list(SmsFailure(status=500))  # and the message list is down
    dispatcher = _dispatcher(db, protocol, clock, sms, bot)
    await dispatcher.run_once()
    told_at = None
    for _ in range(6):
        clock.advance(timedelta(seconds=10))
        await dispatcher.run_once()
        if told_at is None and _notices(fake_telegram):
            told_at = clock.now()
    assert told_at is not None
    assert told_at - started <= timedelta(minutes=1)
    (notice,) = _notices(fake_telegram)
    assert "S001" in notice
    assert f"message {reply}" in notice
    assert "SMS" in notice
    row_ = await _row(db, reply)
    assert (row_.status, row_.attempts) == ("unknown", 3)
    # The first send, and one more when the list could not say: at most one duplicate.
    assert len(_to_patient(twilio)) == 2
    assert len(twilio.list_queries) == 2
    # Nothing more after the last attempt: it is an operator's now (engage outbox requeue).
    clock.advance(timedelta(hours=1))
    await dispatcher.run_once()
    assert len(_to_patient(twilio)) == 2
    assert len(_notices(fake_telegram)) == 1
    # The coordinator sees it in the digest too: an open routine alert about the patient.
    async with db.read() as session:
        (alert,) = (await session.execute(select(Alert).where(
            Alert.kind == "delivery_failed"))).scalars()
        in_digest = await digest.open_alerts(session, ["BJ01"])
    assert (alert.tier, alert.status) == ("routine", "open")
    assert f"message {reply}" in (alert.summary or "")
    assert [(line.alert_id, line.kind) for line in in_digest
            if line.kind == "delivery_failed"] == [(alert.id, "delivery_failed")]
    await asyncio.sleep(LATE)


async def test_a_telegram_safety_reply_that_timed_out_is_sent_again(
        db: Database, protocol: Protocol, clock: SimulatedClock, twilio: FakeTwilioAPI,
        sms: SmsChannel, bot: Bot, fake_telegram: FakeTelegramAPI) -> None:
    await people.add_site(db, clock.now())
    await people.add_staff(db, clock.now(), telegram_id=COORDINATOR)
    enrolled = await people.enrol(db, protocol, clock.now(), language="en")
    core = Conversation(db, protocol, clock)
    await core.handle(InboundEvent("telegram", "1", str(PATIENT_CHAT), f"/start {enrolled.code}",
                                   None, clock.now(), {"chat_id": PATIENT_CHAT}))
    await core.handle(InboundEvent("telegram", "2", str(PATIENT_CHAT), EMERGENCY, None,
                                   clock.now(), {"chat_id": PATIENT_CHAT}))
    reply = await _reply_id(db)
    fake_telegram.hang_chat(PATIENT_CHAT, LATE)  # Telegram delivers it, answers too late
    dispatcher = _dispatcher(db, protocol, clock, sms, bot)
    await dispatcher.run_once()
    assert (await _row(db, reply)).status == "unknown"
    clock.advance(timedelta(seconds=10))
    await dispatcher.run_once()
    sent = await _row(db, reply)
    assert sent.status == "sent"
    assert (sent.provider_id or "").startswith(f"{PATIENT_CHAT}:")
    emergency = [c for c in fake_telegram.sent("sendMessage", PATIENT_CHAT)
                 if c.params["text"].startswith(_emergency_text()[:20])]
    assert len(emergency) == 2  # Telegram cannot be asked: a duplicate rather than a loss
    assert await _events(db, reply) == ["unknown", "recheck", "recheck", "sent"]
    await asyncio.sleep(LATE)


async def test_a_routine_sms_that_timed_out_is_never_looked_at_again(
        db: Database, protocol: Protocol, clock: SimulatedClock, twilio: FakeTwilioAPI,
        sms: SmsChannel, bot: Bot) -> None:
    (message_id,) = await insert_rows(db, [row("dose:reminder:1", address=PHONE, channel="sms",
                                               now=clock.now())])
    twilio.fail_number(PHONE, SmsFailure(status=201, delay=LATE, times=1))
    dispatcher = _dispatcher(db, protocol, clock, sms, bot)
    await dispatcher.run_once()
    for _ in range(6):
        clock.advance(timedelta(seconds=10))
        await dispatcher.run_once()
    assert (await _row(db, message_id)).status == "unknown"
    assert len(twilio.sent_to(PHONE)) == 1
    assert twilio.list_queries == []
    await asyncio.sleep(LATE)


# --- engage outbox unknown / requeue --------------------------------------------------------

@pytest.fixture
def rows_of_unknown_fate(db_url: str, monkeypatch: pytest.MonkeyPatch,
                         tmp_path: Path) -> list[int]:
    """Two messages of unknown fate (a routine SMS, a safety Telegram reply) and a sent one."""
    monkeypatch.setenv("ENGAGE_DATABASE_URL", db_url)
    monkeypatch.chdir(tmp_path)
    now = SystemClock().now()

    async def make() -> list[int]:
        database = Database(db_url)
        try:
            ids = await insert_rows(database, [
                row("dose:reminder:7", address=PHONE, channel="sms", now=now, status="unknown"),
                row("reply:8:0", address=str(PATIENT_CHAT), lane="safety", now=now,
                    template_id="report.reply_emergency", status="unknown"),
                row("dose:reminder:9", address=PHONE, channel="sms", now=now, status="sent")])
            async with database.write() as session:
                for message_id in ids[:2]:
                    outbox.note(session, message_id, "unknown", now, "maybe sent: timeout")
            return ids
        finally:
            await database.dispose()

    return asyncio.run(make())


def test_outbox_unknown_lists_the_rows_of_unknown_fate_masked(
        rows_of_unknown_fate: list[int], db_url: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    routine, safety, _ = rows_of_unknown_fate
    outcome = run_cli(capsys, "outbox", "unknown", "--json")
    assert outcome.status == 0, outcome.err
    listed = json.loads(outcome.out)
    assert [(r["message_id"], r["lane"], r["channel"], r["key"]) for r in listed] == [
        (routine, "routine", "sms", "dose:reminder:7"),
        (safety, "safety", "telegram", "reply:8:0")]
    assert [r["address"] for r in listed] == ["+86138****0123", "****7001"]
    assert all(r["created_at"] and r["attempted_at"] for r in listed)
    assert PHONE not in outcome.out
    text = run_cli(capsys, "outbox", "unknown")
    assert text.status == 0
    assert "dose:reminder:7" in text.out
    assert "reply:8:0" in text.out


def test_outbox_requeue_sends_one_again_audited_and_refuses_others(
        rows_of_unknown_fate: list[int], db_url: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    routine, safety, sent = rows_of_unknown_fate
    outcome = run_cli(capsys, "outbox", "requeue", str(routine), "--reason", "patient says no")
    assert outcome.status == 0, outcome.err
    assert f"message {routine}: queued" in outcome.out
    (status,) = fetch(db_url, select(OutboundMessage.status).where(
        OutboundMessage.id == routine))[0]
    assert status == "queued"
    (entry,) = [r[0] for r in fetch(db_url, select(AuditEntry).where(
        AuditEntry.action == "requeue"))]
    assert (entry.entity, entry.entity_id, entry.old_value, entry.new_value, entry.reason) == (
        "outbound_messages", str(routine), "unknown", "queued", "patient says no")
    events = [r[0] for r in fetch(db_url, select(DeliveryEvent.status).where(
        DeliveryEvent.message_id == routine).order_by(DeliveryEvent.id))]
    assert events == ["unknown", "requeued"]

    again = run_cli(capsys, "outbox", "requeue", str(routine))
    assert (again.status, again.err.strip()) == (
        2, f"error: message {routine} is queued, not unknown: only a message of unknown fate "
           "is sent again")
    done = run_cli(capsys, "outbox", "requeue", str(sent))
    assert done.status == 2
    assert f"message {sent} is sent, not unknown" in done.err
    missing = run_cli(capsys, "outbox", "requeue", "99999")
    assert (missing.status, missing.err.strip()) == (2, "error: no message 99999")
    listed = json.loads(run_cli(capsys, "outbox", "unknown", "--json").out)
    assert [r["message_id"] for r in listed] == [safety]

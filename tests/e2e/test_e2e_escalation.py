"""Issue 5, acceptance 2, end to end through the real parts: a signed Twilio webhook into the HTTP
server, the conversation core, triage, the runner's tick and the dispatcher, the real aiogram
bot and twilio client against the fake Bot API and fake Twilio, and a staff member's button
press coming back through Telegram polling. Only the clock of the study is simulated."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from bot.channels.telegram import TelegramChannel, TelegramPoller, build_dispatcher, make_bot
from bot.channels.twilio import SmsChannel
from bot.channels.twilio.inbound import TwilioInbound
from bot.conversation import Conversation
from bot.http import Server
from engage.clock import SimulatedClock
from fakes.servers import ACCOUNT, AUTH_TOKEN, SERVICE, TOKEN
from fakes.telegram_api import Call, FakeTelegramAPI
from fakes.twilio_api import FakeTwilioAPI
from fakes.webhooks import PUBLIC_URL, http_client, post_signed
from messages import catalogue
from scheduler.dispatcher import OutboxSender
from scheduler.ratelimit import ChannelRate
from scheduler.runner import Runner
from storage.db import Database
from storage.models import Alert, AlertEvent, AuditEntry, OutboundMessage, SymptomReport
from tests.factories import add_site, add_staff, enrol
from trial.protocol import Protocol

PATIENT_PHONE = "+8613900000007"
COORDINATOR, INVESTIGATOR, PI = 7001, 7002, 7003
COORDINATOR_PHONE = "+8613800000101"


async def _until(condition: Callable[[], bool], within: float, what: str) -> float:
    """Wait until `condition` holds; return the wall-clock seconds it took."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > within:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(0.01)
    return time.monotonic() - start


def _buttons(call: Call) -> list[str]:
    markup = call.params.get("reply_markup") or {}
    return [b["callback_data"] for row in markup.get("inline_keyboard", []) for b in row]


def _pages(api: FakeTelegramAPI, chat: int) -> list[Call]:
    return [c for c in api.sent("sendMessage", chat) if any(
        d.startswith("alert:ack:") for d in _buttons(c)) and "URGENT" in c.params["text"]]


def _texts(api: FakeTelegramAPI, chat: int) -> list[str]:
    return [str(c.params["text"]) for c in api.sent("sendMessage", chat)]


@dataclass
class Site:
    coordinator: int
    investigator: int
    pi: int
    patient: int


@dataclass
class Running:
    """The whole process as `engage run` wires it, with its clock in the test's hands."""

    runner: Runner
    poller_stop: asyncio.Event
    poller: asyncio.Task[None]
    client: Any


@pytest.fixture
async def world(db: Database, protocol: Protocol, clock: SimulatedClock) -> Site:
    now = clock.now()
    await add_site(db, now)
    coordinator = await add_staff(db, now, telegram_id=COORDINATOR, phone=COORDINATOR_PHONE)
    investigator = await add_staff(db, now, telegram_id=INVESTIGATOR, role="investigator")
    pi = await add_staff(db, now, telegram_id=PI, role="pi")
    # Dose time in the evening: no reminder crosses the morning this test plays out in.
    patient = await enrol(db, protocol, now, phone=PATIENT_PHONE, language="zh",
                          dose_time="21:00")
    return Site(coordinator, investigator, pi, patient.patient_id)


@pytest.fixture
async def running(db: Database, protocol: Protocol, clock: SimulatedClock,
                  fake_telegram: FakeTelegramAPI,
                  fake_twilio: FakeTwilioAPI) -> AsyncIterator[Running]:
    bot = make_bot(TOKEN, fake_telegram.base_url)
    sms = SmsChannel(account_sid=ACCOUNT, auth_token=AUTH_TOKEN, api_url=fake_twilio.base_url,
                     status_callback=f"{PUBLIC_URL}/twilio/status",
                     messaging_service_sid=SERVICE, timeout=5)
    # Production defaults (poll interval, lanes, leases); only the provider rates are lifted
    # so the test does not wait for rate-limit slots.
    dispatcher = OutboxSender(db, protocol, {"telegram": TelegramChannel(bot), "sms": sms}, clock,
                            worker_id="e2e", rates={"telegram": ChannelRate(0.0),
                                                    "sms": ChannelRate(0.0)})
    conversation = Conversation(db, protocol, clock, wake=dispatcher.wake)
    runner = Runner(db, protocol, dispatcher, clock, tick_seconds=3600)
    await runner.start()
    await runner.tick_now()  # waits for the start-up tick (today's digest), then ticks again
    await _settled(db, clock)
    poller_stop = asyncio.Event()
    poller = asyncio.create_task(TelegramPoller(
        bot, build_dispatcher(conversation, clock), timeout=1, retry_seconds=0.05
    ).run(poller_stop))
    server = Server(db=db, parts=lambda: {"scheduler": runner.running},
                    routes=TwilioInbound(conversation, db, clock, PUBLIC_URL,
                                         AUTH_TOKEN).routes())
    try:
        async with http_client(server) as client:
            yield Running(runner, poller_stop, poller, client)
    finally:
        poller_stop.set()
        await asyncio.wait_for(poller, 5)
        await runner.stop()
        await bot.session.close()
        await sms.close()


async def _settled(db: Database, clock: SimulatedClock) -> None:
    """Wait until the dispatcher has nothing in flight and nothing due. Leases run on the study
    clock: moving it hours on while a row is claimed would expire that lease under the worker
    (another claim would take the row over and send it again, as it should after a crash)."""
    deadline = time.monotonic() + 5.0
    while True:
        async with db.read() as session:
            busy = (await session.execute(select(OutboundMessage.id).where(
                (OutboundMessage.status == "sending")
                | ((OutboundMessage.status == "queued")
                   & (OutboundMessage.due_at <= clock.now()))))).first()
        if busy is None:
            return
        assert time.monotonic() < deadline, "the outbox did not settle"
        await asyncio.sleep(0.02)


async def _tick(running: Running, db: Database, clock: SimulatedClock,
                by: timedelta) -> dict[str, int]:
    """Move the study clock on and run one tick the way the runner does (it wakes the
    dispatcher when anything was planned)."""
    await _settled(db, clock)
    clock.advance(by)
    report = await running.runner.tick_now()
    assert report is not None, running.runner.last_tick_error
    return report.counts


async def _press(api: FakeTelegramAPI, update: dict[str, Any]) -> None:
    """Deliver an update through getUpdates and wait until the poller confirmed it (which it
    does only after the handling committed)."""
    await api.wait_confirmed(api.inject(update))


async def test_fever_sms_pages_the_coordinator_escalates_and_stops_when_the_pi_acknowledges(
        db: Database, protocol: Protocol, clock: SimulatedClock, world: Site,
        running: Running, fake_telegram: FakeTelegramAPI,
        fake_twilio: FakeTwilioAPI, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    api = fake_telegram
    received = clock.advance(timedelta(minutes=10))  # 08:10 in Shanghai

    # 1. The patient texts a fever; the coordinator's Telegram has the alert within 2 s.
    started = time.monotonic()
    response = await post_signed(running.client, "/twilio/sms", {
        "MessageSid": "SM" + "e" * 32, "AccountSid": ACCOUNT, "From": PATIENT_PHONE,
        "To": "+15005550006", "Body": "发烧38.6度", "NumMedia": "0"}, AUTH_TOKEN)
    assert response.status == 200
    await _until(lambda: bool(_pages(api, COORDINATOR)), 2.0, "the coordinator's page")
    assert time.monotonic() - started <= 2.0
    (page,) = _pages(api, COORDINATOR)
    async with db.read() as session:
        alert = (await session.execute(select(Alert))).scalar_one()
        report = (await session.execute(select(SymptomReport))).scalar_one()
    assert (alert.tier, alert.status, report.tier, report.temperature_c) == (
        "same_day", "open", "same_day", 38.6)
    assert _buttons(page) == [f"alert:ack:{alert.id}", f"alert:resolve:{alert.id}"]
    markup = page.params["reply_markup"]["inline_keyboard"]
    assert [b["text"] for row in markup for b in row] == ["Acknowledge", "Resolve"]
    for expected in ("S001", "发烧38.6度", "2026-03-02 00:10 UTC"):
        assert expected in page.params["text"]
    # The coordinator also has a phone: the page goes by SMS too, naming no symptom.
    await _until(lambda: bool(fake_twilio.sent_to(COORDINATOR_PHONE)), 5.0, "the page SMS")
    assert "发烧" not in fake_twilio.sent_to(COORDINATOR_PHONE)[0].params["Body"]

    # 2. The patient gets the same-day script, by SMS.
    script = catalogue.render("report.reply_same_day", "zh")
    await _until(lambda: any(script in r.params["Body"]
                             for r in fake_twilio.sent_to(PATIENT_PHONE)), 5.0, "the reply")
    assert len(fake_twilio.sent_to(PATIENT_PHONE)) == 1

    # 3. Nobody acknowledges. Not a page before the same-day timeout...
    timeout = timedelta(minutes=protocol.escalation.ack_timeout_minutes.same_day)
    assert (await _tick(running, db, clock, timeout - timedelta(minutes=1)))["escalation"] == 0
    # ...then the investigator...
    assert (await _tick(running, db, clock, timedelta(minutes=1)))["escalation"] == 1
    await _until(lambda: bool(_pages(api, INVESTIGATOR)), 3.0, "the investigator's page")
    assert not _pages(api, PI)
    # ...then the PI. The ladder is cumulative (issue 17): each step pages everyone before again.
    assert (await _tick(running, db, clock, timeout))["escalation"] == 1
    await _until(lambda: [len(_pages(api, chat)) for chat in (COORDINATOR, INVESTIGATOR, PI)]
                 == [3, 2, 1], 3.0, "the PI's page, the others' again")
    assert _buttons(_pages(api, PI)[0]) == [f"alert:ack:{alert.id}", f"alert:resolve:{alert.id}"]

    # 4. The PI presses Acknowledge (a callback query through getUpdates and the real router).
    await _settled(db, clock)
    ack_at = clock.advance(timedelta(minutes=5))
    await _press(api, api.callback_update(PI, f"alert:ack:{alert.id}", message_id=3))
    acknowledged = catalogue.render("alert.acknowledged", "en", id=alert.id)
    await _until(lambda: acknowledged in _texts(api, PI), 3.0, "the acknowledgement")
    assert api.sent("answerCallbackQuery")

    # The chain stops: hours later, no tick pages anyone again.
    for _ in range(3):
        assert (await _tick(running, db, clock, timeout))["escalation"] == 0
    await asyncio.sleep(0.3)  # anything wrongly queued would be sent by now
    assert [len(_pages(api, chat)) for chat in (COORDINATOR, INVESTIGATOR, PI)] == [3, 2, 1]

    # 5. Resolve without a note is refused, by button and by command.
    refused = catalogue.render("alert.error_note_required", "en", id=alert.id)
    await _press(api, api.callback_update(PI, f"alert:resolve:{alert.id}", message_id=3))
    await _press(api, api.message_update(PI, f"/resolve {alert.id}"))
    await _until(lambda: _texts(api, PI).count(refused) == 2, 3.0, "two refusals")
    async with db.read() as session:
        assert (await session.get(Alert, alert.id)).status == "acknowledged"  # type: ignore[union-attr]

    # 6. /resolve ID NOTE closes it.
    await _settled(db, clock)
    resolved_at = clock.advance(timedelta(minutes=20))
    note = "called the patient; seen in clinic today"
    await _press(api, api.message_update(PI, f"/resolve {alert.id} {note}"))
    done = catalogue.render("alert.resolved", "en", id=alert.id)
    await _until(lambda: done in _texts(api, PI), 3.0, "the resolution")

    # 7. The audit trail has every step, with its actor and UTC time.
    paged_at = [received, received + timeout, received + 2 * timeout]
    async with db.read() as session:
        final = await session.get(Alert, alert.id)
        events = (await session.execute(select(AlertEvent).where(
            AlertEvent.alert_id == alert.id).order_by(AlertEvent.step))).scalars().all()
        trail = (await session.execute(select(AuditEntry).where(
            AuditEntry.entity == "alerts", AuditEntry.entity_id == str(alert.id))
            .order_by(AuditEntry.id))).scalars().all()
        pages = (await session.execute(select(OutboundMessage).where(
            OutboundMessage.alert_id == alert.id).order_by(OutboundMessage.id))).scalars().all()
    assert final is not None
    assert (final.status, final.acknowledged_by, final.acknowledged_at, final.resolved_by,
            final.resolved_at, final.resolution_note) == (
        "resolved", world.pi, ack_at, world.pi, resolved_at, note)
    assert [(e.step, e.kind, e.level, e.staff_id, e.at) for e in events] == [
        (0, "opened", 0, None, received),
        (1, "paged", 0, None, paged_at[0]),
        (2, "paged", 1, None, paged_at[1]),
        (3, "paged", 2, None, paged_at[2]),
        (4, "acknowledged", 2, world.pi, ack_at),
        (5, "resolved", 2, world.pi, resolved_at)]
    assert all(e.at.tzinfo is UTC for e in events)
    assert [(p.staff_id, p.channel, p.status) for p in pages] == [
        (world.coordinator, "telegram", "sent"), (world.coordinator, "sms", "sent"),
        (world.coordinator, "telegram", "sent"), (world.coordinator, "sms", "sent"),
        (world.investigator, "telegram", "sent"),
        (world.coordinator, "telegram", "sent"), (world.coordinator, "sms", "sent"),
        (world.investigator, "telegram", "sent"), (world.pi, "telegram", "sent")]

    async with db.read() as session:
        (filed,) = (await session.execute(select(AuditEntry).where(
            AuditEntry.entity == "symptom_reports", AuditEntry.action == "create"))).scalars()
    assert (filed.actor_kind, filed.actor_id, filed.at) == ("patient", "S001", received)

    def who(entry: AuditEntry) -> tuple[str, str]:
        return entry.actor_kind, entry.actor_id

    assert [(e.action, who(e), e.at) for e in trail if e.action in ("create", "page")] == [
        ("create", ("system", "triage"), received),
        ("page", ("system", "escalation"), paged_at[0]),
        ("page", ("system", "escalation"), paged_at[1]),
        ("page", ("system", "escalation"), paged_at[2])]
    staff_changes = {(e.field, e.new_value, who(e), e.at) for e in trail
                     if e.actor_kind == "staff"}
    pi = ("staff", str(world.pi))
    assert {("status", "acknowledged", pi, ack_at), ("status", "resolved", pi, resolved_at),
            ("resolution_note", note, pi, resolved_at)} <= staff_changes
    assert all(e.at.tzinfo is UTC and e.at.utcoffset() == timedelta(0) for e in trail)
    assert all(isinstance(e.at, datetime) for e in trail)
    # Nothing went wrong on the way: no error logged, no send recorded twice or lost.
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR
            or "lease lost" in r.getMessage()] == []

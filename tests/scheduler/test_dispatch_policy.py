"""What the dispatcher does before and after a send: recipient checks, quiet hours, the daily
SMS cap, retries, unknown outcomes and permanent refusals."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy import select

from engage.clock import SimulatedClock
from messages.channel import Choice, PermanentSendError, TransientSendError
from scheduler.dispatcher import OutboxSender
from storage.db import Database
from storage.models import Alert, AuditEntry, DeliveryEvent, OutboundMessage, Patient
from study import outgoing
from tests.workers.dispatch_support import (
    COORDINATOR_CHAT,
    FakeChannel,
    add_patient,
    insert_rows,
    message,
    row,
    seed_site,
)
from trial import delivery
from trial.protocol import Protocol

PHONE = "+8613800138000"
CHAT = "424242"


def _dispatcher(db: Database, protocol: Protocol, clock: SimulatedClock,
                **options: Any) -> tuple[OutboxSender, FakeChannel, FakeChannel]:
    telegram, sms = FakeChannel("telegram"), FakeChannel("sms")
    options.setdefault("rates", {})
    dispatcher = OutboxSender(db, protocol, {"telegram": telegram, "sms": sms}, clock,
                            worker_id="w1", rng=random.Random(7), **options)
    return dispatcher, telegram, sms


async def _patient(db: Database, clock: SimulatedClock, **kwargs: Any) -> int:
    await seed_site(db, clock.now())
    kwargs.setdefault("telegram_id", int(CHAT))
    return await add_patient(db, clock.now(), "S01-001", **kwargs)


async def _events(db: Database, mid: int) -> list[tuple[str, str]]:
    async with db.read() as session:
        return [(e.status, e.detail) for e in (await session.execute(
            select(DeliveryEvent).where(DeliveryEvent.message_id == mid)
            .order_by(DeliveryEvent.id))).scalars()]


async def test_sends_due_rows_and_records_the_provider_id(db: Database, protocol: Protocol,
                                                          clock: SimulatedClock) -> None:
    pid = await _patient(db, clock)
    now = clock.now()
    due, later = await insert_rows(db, [
        row("due", address=CHAT, now=now, patient_id=pid),
        row("later", address=CHAT, now=now, due_at=now + timedelta(minutes=1), patient_id=pid),
    ])
    dispatcher, telegram, _ = _dispatcher(db, protocol, clock)
    assert await dispatcher.run_once() == 1
    assert [s.message.message_id for s in telegram.sent] == [due]
    sent = await message(db, due)
    assert (sent.status, sent.provider_id, sent.attempts, sent.sent_at) == (
        "sent", telegram.sent[0].provider_id, 1, now)
    assert (await message(db, later)).status == "queued"
    assert await dispatcher.run_once() == 0
    clock.advance(timedelta(minutes=1))
    assert await dispatcher.run_once() == 1
    assert len(telegram.sent) == 2


async def test_quiet_hours_hold_routine_never_safety(sqlite_db: Database, protocol: Protocol,
                                                     clock: SimulatedClock) -> None:
    db = sqlite_db
    pid = await _patient(db, clock)
    clock.set(datetime(2026, 3, 2, 15, 0, tzinfo=UTC))  # 23:00 in Shanghai: quiet
    routine, safety = await insert_rows(db, [
        row("routine", address=CHAT, now=clock.now(), patient_id=pid),
        row("safety", address=CHAT, now=clock.now(), patient_id=pid, lane="safety",
            template_id="report.urgent_reply"),
    ])
    dispatcher, telegram, _ = _dispatcher(db, protocol, clock)
    assert await dispatcher.run_once() == 2
    assert [s.message.message_id for s in telegram.sent] == [safety]
    held = await message(db, routine)
    window_end = datetime(2026, 3, 2, 23, 0, tzinfo=UTC)  # 07:00 next morning, Shanghai
    assert (held.status, held.due_at, held.attempts) == ("queued", window_end, 0)
    clock.set(window_end - timedelta(minutes=1))
    assert await dispatcher.run_once() == 0
    clock.set(window_end)
    assert await dispatcher.run_once() == 1
    assert (await message(db, routine)).status == "sent"


async def test_paused_patient_gets_no_routine_message_but_safety_still_goes(
        db: Database, protocol: Protocol, clock: SimulatedClock) -> None:
    pid = await _patient(db, clock, status="paused")
    routine, safety = await insert_rows(db, [
        row("routine", address=CHAT, now=clock.now(), patient_id=pid),
        row("safety", address=CHAT, now=clock.now(), patient_id=pid, lane="safety"),
    ])
    dispatcher, telegram, _ = _dispatcher(db, protocol, clock)
    await dispatcher.run_once()
    assert [s.message.message_id for s in telegram.sent] == [safety]
    cancelled = await message(db, routine)
    assert (cancelled.status, cancelled.last_error) == ("cancelled", "patient paused")


async def test_daily_sms_cap_drops_the_least_important_routine_never_safety(
        sqlite_db: Database, protocol: Protocol, clock: SimulatedClock) -> None:
    db = sqlite_db
    pid = await _patient(db, clock, telegram_id=None, phone=PHONE)
    now = clock.now()  # 08:00 in Shanghai
    cap = protocol.sms.daily_cap
    earlier_today = [row(f"old{i}", address=PHONE, channel="sms", now=now, patient_id=pid,
                         status="sent", sent_at=now - timedelta(minutes=30))
                     for i in range(cap - 1)]
    yesterday = row("yesterday", address=PHONE, channel="sms", now=now, patient_id=pid,
                    status="sent", sent_at=now - timedelta(hours=9))  # 23:00 the day before
    await insert_rows(db, [*earlier_today, yesterday])
    follow_up, reminder, safety, chat = await insert_rows(db, [
        row("followup", address=PHONE, channel="sms", now=now, patient_id=pid,
            due_at=now - timedelta(minutes=5), template_id="dose.followup"),
        row("reminder", address=PHONE, channel="sms", now=now, patient_id=pid,
            template_id="dose.reminder"),
        row("safety", address=PHONE, channel="sms", now=now, patient_id=pid, lane="safety",
            template_id="report.urgent_reply"),
        row("chat", address=PHONE, channel="sms", now=now, patient_id=pid,
            due_at=now + timedelta(hours=2), template_id="chat.help"),
    ])
    dispatcher, _, sms = _dispatcher(db, protocol, clock)
    await dispatcher.run_once()
    assert sorted(s.message.message_id for s in sms.sent) == sorted([reminder, safety])
    dropped = await message(db, follow_up)
    assert dropped.status == "dropped"
    assert "daily SMS cap" in (dropped.last_error or "")
    clock.advance(timedelta(hours=2))
    await dispatcher.run_once()
    assert (await message(db, chat)).status == "dropped"  # the cap is full for the day
    rank = partial(delivery.importance, protocol.sms)
    assert rank("dose.reminder") > rank("dose.followup") > rank("chat.help")


async def test_transient_error_is_retried_with_backoff_then_given_up(
        sqlite_db: Database, protocol: Protocol, clock: SimulatedClock) -> None:
    db = sqlite_db
    pid = await _patient(db, clock)
    (mid,) = await insert_rows(db, [row("m", address=CHAT, now=clock.now(), patient_id=pid)])
    dispatcher, telegram, _ = _dispatcher(db, protocol, clock, max_attempts=3,
                                          backoff_base=2.0)
    telegram.fail_always(CHAT, TransientSendError("502 Bad Gateway"))
    start = clock.now()
    await dispatcher.run_once()
    first = await message(db, mid)
    assert (first.status, first.attempts, first.last_error) == ("queued", 1, "502 Bad Gateway")
    assert start < first.due_at <= start + timedelta(seconds=2)
    assert await dispatcher.run_once() == 0  # not before its backoff
    clock.set(first.due_at)
    await dispatcher.run_once()
    second = await message(db, mid)
    assert second.attempts == 2
    assert clock.now() < second.due_at <= clock.now() + timedelta(seconds=4)
    clock.set(second.due_at)
    await dispatcher.run_once()
    assert [a[1] for a in telegram.attempts].count(CHAT) == 3
    gave_up = await message(db, mid)
    assert (gave_up.status, gave_up.attempts) == ("failed", 3)
    async with db.read() as session:
        alert = (await session.execute(select(Alert))).scalar_one()
    assert (alert.kind, alert.tier, alert.patient_id) == ("delivery_failed", "routine", pid)
    notices = [s for s in telegram.sent if s.message.address == str(COORDINATOR_CHAT)]
    assert len(notices) == 1
    assert "S01-001" in notices[0].message.text
    assert "3 attempts" in notices[0].message.text


async def test_recovered_transient_error_sends_once(sqlite_db: Database, protocol: Protocol,
                                                    clock: SimulatedClock) -> None:
    db = sqlite_db
    pid = await _patient(db, clock)
    (mid,) = await insert_rows(db, [row("m", address=CHAT, now=clock.now(), patient_id=pid)])
    dispatcher, telegram, _ = _dispatcher(db, protocol, clock)
    telegram.fail_next(CHAT, TransientSendError("503"))
    await dispatcher.run_once()
    clock.advance(timedelta(seconds=2))
    await dispatcher.run_once()
    assert [s.message.message_id for s in telegram.sent] == [mid]
    assert [e[0] for e in await _events(db, mid)] == ["retry", "sent"]


async def test_maybe_sent_is_not_resent_blindly(db: Database, protocol: Protocol,
                                                clock: SimulatedClock) -> None:
    pid = await _patient(db, clock)
    (mid,) = await insert_rows(db, [row("m", address=CHAT, now=clock.now(), patient_id=pid)])
    dispatcher, telegram, _ = _dispatcher(db, protocol, clock)
    telegram.fail_next(CHAT, TransientSendError("read timeout", maybe_sent=True))
    await dispatcher.run_once()
    clock.advance(timedelta(hours=1))
    await dispatcher.run_once()
    assert len(telegram.attempts) == 1
    assert (await message(db, mid)).status == "unknown"


async def _alerts(db: Database) -> list[Alert]:
    async with db.read() as session:
        return list((await session.execute(select(Alert))).scalars())


async def _patient_row(db: Database, pid: int) -> Patient:
    async with db.read() as session:
        found = await session.get(Patient, pid)
        assert found is not None
        return found


async def test_blocked_bot_is_permanent_marks_unreachable_and_tells_coordinator(
        db: Database, protocol: Protocol, clock: SimulatedClock) -> None:
    pid = await _patient(db, clock)
    reminder, later = await insert_rows(db, [
        row("reminder", address=CHAT, now=clock.now(), patient_id=pid),
        row("later", address=CHAT, now=clock.now(), patient_id=pid,
            due_at=clock.now() + timedelta(hours=1), template_id="dose.followup"),
    ])
    dispatcher, telegram, sms = _dispatcher(db, protocol, clock)
    telegram.fail_always(CHAT, PermanentSendError("Forbidden: bot was blocked by the user",
                                                  unreachable=True, code="403"))
    await dispatcher.run_once()
    failed = await message(db, reminder)
    assert (failed.status, failed.attempts) == ("failed", 1)
    assert not (await _patient_row(db, pid)).telegram_reachable
    (alert,) = await _alerts(db)
    assert (alert.kind, alert.tier, alert.patient_id, alert.site_id) == (
        "unreachable", "routine", pid, "S01")
    notices = telegram.to(str(COORDINATOR_CHAT))
    assert len(notices) == 1
    assert "S01-001" in notices[0].message.text
    async with db.read() as session:
        audited = (await session.execute(select(AuditEntry).where(
            AuditEntry.field == "telegram_reachable"))).scalar_one()
    assert (audited.actor_kind, audited.old_value, audited.new_value) == (
        "system", "True", "False")
    clock.advance(timedelta(hours=1))
    await dispatcher.run_once()  # no phone: nothing else can reach the patient
    assert len([a for a in telegram.attempts if a[1] == CHAT]) == 1
    cancelled = await message(db, later)
    assert (cancelled.status, cancelled.last_error) == (
        "cancelled", "patient unreachable by telegram")
    assert sms.sent == []


async def test_safety_message_to_blocked_telegram_goes_again_by_sms(
        db: Database, protocol: Protocol, clock: SimulatedClock) -> None:
    pid = await _patient(db, clock, phone=PHONE)
    (mid,) = await insert_rows(db, [row("alert:1:reply", address=CHAT, now=clock.now(),
                                        patient_id=pid, lane="safety")])
    dispatcher, telegram, sms = _dispatcher(db, protocol, clock)
    telegram.fail_always(CHAT, PermanentSendError("Forbidden", unreachable=True, code="403"))
    await dispatcher.run_once()
    assert (await message(db, mid)).status == "failed"
    # The copy is rendered for SMS when it is queued: signed with the site's name, stored so.
    assert [s.message.text for s in sms.to(PHONE)] == ["text of alert:1:reply\nSite one"]
    async with db.read() as session:
        via = (await session.execute(select(OutboundMessage).where(
            OutboundMessage.dedupe_key == "alert:1:reply:via:sms"))).scalar_one()
    assert (via.lane, via.status, via.channel) == ("safety", "sent", "sms")
    assert (via.body, via.plain_text) == ("text of alert:1:reply\nSite one",
                                          "text of alert:1:reply")


async def test_sms_stop_and_invalid_number_are_permanent(
        db: Database, protocol: Protocol, clock: SimulatedClock) -> None:
    await seed_site(db, clock.now())
    other = "+8613900139000"
    stopped = await add_patient(db, clock.now(), "S01-001", telegram_id=None, phone=PHONE)
    invalid = await add_patient(db, clock.now(), "S01-002", telegram_id=None, phone=other)
    await insert_rows(db, [
        row("a", address=PHONE, channel="sms", now=clock.now(), patient_id=stopped),
        row("b", address=other, channel="sms", now=clock.now(), patient_id=invalid),
    ])
    dispatcher, telegram, sms = _dispatcher(db, protocol, clock)
    sms.fail_always(PHONE, PermanentSendError("unsubscribed recipient", opted_out=True,
                                              code="21610"))
    sms.fail_always(other, PermanentSendError("invalid 'To' number", unreachable=True,
                                              code="21211"))
    await dispatcher.run_once()
    await dispatcher.run_once()
    assert len(sms.attempts) == 2  # no retry
    assert (await _patient_row(db, stopped)).opted_out
    assert not (await _patient_row(db, invalid)).sms_reachable
    # 21610 is the patient's STOP at the carrier: an opt-out, the same as a STOP to us.
    assert sorted(a.kind for a in await _alerts(db)) == ["opt_out", "unreachable"]
    texts = sorted(s.message.text for s in telegram.to(str(COORDINATOR_CHAT)))
    assert len(texts) == 2
    assert any("STOP" in t and "S01-001" in t for t in texts)
    assert any("S01-002" in t and "SMS" in t for t in texts)


async def test_rows_of_a_dead_worker_are_sent_after_its_lease_expires(
        db: Database, protocol: Protocol, clock: SimulatedClock) -> None:
    pid = await _patient(db, clock)
    (mid,) = await insert_rows(db, [row("m", address=CHAT, now=clock.now(), patient_id=pid)])
    dead, dead_channel, _ = _dispatcher(db, protocol, clock, lease=timedelta(seconds=60))
    count, rows, _token = await dead._claim("routine", 10)  # claimed, then the process died
    assert (count, [r.id for r in rows]) == (1, [mid])
    alive, telegram, _ = _dispatcher(db, protocol, clock)
    assert await alive.run_once() == 0
    clock.advance(timedelta(seconds=61))
    assert await alive.run_once() == 1
    assert [s.message.message_id for s in telegram.sent] == [mid]
    assert dead_channel.sent == []
    assert [e[0] for e in await _events(db, mid)] == ["reclaimed", "sent"]
    assert (await message(db, mid)).attempts == 2


async def test_every_patient_sms_is_signed_once_and_stored_as_sent(
        db: Database, protocol: Protocol, clock: SimulatedClock) -> None:
    # A reminder the planner queued, a reply, and a Telegram message rerouted to SMS alike
    # (docs/messages.md): the patient knows an SMS from us by the site's name, after the choice
    # line. study.outgoing renders the whole text once; the outbox body is what the provider got.
    pid = await _patient(db, clock, telegram_id=None, phone=PHONE)
    to_sms = outgoing.Recipient("sms", PHONE, "en", patient_id=pid)
    choices = (Choice("Taken", "dose:taken:1", "1"), Choice("Report", "report:start", ""))
    async with db.write() as session:
        await outgoing.queue_many(session, [outgoing.plan(
            to_sms, outgoing.Rendered("Dose time.", "dose.reminder", "v1", choices),
            key="dose:reminder:1", now=clock.now())], now=clock.now(), protocol=protocol)
        await outgoing.queue(session, to_sms, outgoing.Rendered("Noted.", "report.ack", "v1"),
                             key="reply:1:0", now=clock.now(), protocol=protocol)
        # Queued for Telegram (buttons, plain text); the patient has no Telegram any more.
        await outgoing.queue(session, outgoing.Recipient("telegram", CHAT, "en", patient_id=pid),
                             outgoing.Rendered("Visit soon.", "visit.notice", "v1", choices),
                             key="visit:1", now=clock.now(), protocol=protocol)
    dispatcher, telegram, sms = _dispatcher(db, protocol, clock)
    await dispatcher.run_once()
    assert telegram.sent == []
    sent = sorted(s.message.text for s in sms.to(PHONE))
    assert sent == ["Dose time.\nReply 1 Taken\nSite one", "Noted.\nSite one",
                    "Visit soon.\nReply 1 Taken\nSite one"]
    async with db.read() as session:
        rows = (await session.execute(select(OutboundMessage))).scalars().all()
    assert sorted(r.body for r in rows) == sent
    assert {r.dedupe_key: r.plain_text for r in rows} == {
        "dose:reminder:1": "Dose time.", "reply:1:0": "Noted.", "visit:1": "Visit soon."}

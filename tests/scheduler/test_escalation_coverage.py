"""Issue 17, acceptance 1-4: nights and weekends, nobody reachable, acknowledging by SMS, the SAE
clock. Real parts (the conversation core, the tick steps, the HTTP server's /healthz, a real
database on both backends); the study's clock is a parameter."""

from __future__ import annotations

import logging
from collections import Counter
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from bot.conversation import SMS, Conversation, InboundEvent
from bot.http import Server
from bot.staff_sms import parse
from engage.clock import SimulatedClock
from fakes.webhooks import http_client
from messages import catalogue
from scheduler import escalation
from storage.db import Database
from storage.models import Alert, AlertEvent, AuditEntry, OutboundMessage, SymptomReport
from study import enrolment, oncall
from tests.factories import ACTOR, add_site, add_staff, enrol
from trial.protocol import Protocol

SHANGHAI = ZoneInfo("Asia/Shanghai")
SUNDAY_2AM = datetime(2026, 3, 8, 2, 0, tzinfo=SHANGHAI).astimezone(UTC)
PATIENT_PHONE = "+8613900000017"
INVESTIGATOR_PHONE = "+8613800000017"
OTHER_PHONE = "+8613800000099"
C, INV, P, A, M = "coordinator", "investigator", "pi", "admin", "medical monitor"


async def _study_staff(db: Database, now: datetime, role: str, telegram_id: int) -> int:
    async with db.write() as session:
        member = await enrolment.add_staff(session, site_id=None, role=role, name=role,
                                           telegram_id=telegram_id, phone=None, language="en",
                                           now=now, actor=ACTOR)
        return member.id


async def _sms(conversation: Conversation, sender: str, text: str, at: datetime,
               n: int) -> list[str]:
    """An SMS in; the texts of the replies it queued, before their SMS form (the site's
    signature is appended at queueing: `study.outgoing`; each body ends with it)."""
    handled = await conversation.handle(InboundEvent(SMS, f"SM{n:032d}", sender, text, None, at,
                                                     {"to": "+15005550006"}))
    async with conversation.db.read() as session:
        rows = (await session.execute(select(OutboundMessage).where(
            OutboundMessage.dedupe_key.like(f"reply:{handled.inbound_id}:%"))
            .order_by(OutboundMessage.id))).scalars().all()
    assert all(r.body.startswith(r.plain_text or r.body) for r in rows)
    return [r.plain_text if r.plain_text is not None else r.body for r in rows]


async def _pages(db: Database) -> list[OutboundMessage]:
    async with db.read() as session:
        return list((await session.execute(select(OutboundMessage).where(
            OutboundMessage.dedupe_key.like("alert:%:page:%"))
            .order_by(OutboundMessage.id))).scalars())


async def test_sunday_2am_emergency_pages_the_night_investigator_first_then_cumulatively(
        db: Database, protocol: Protocol) -> None:
    """Acceptance 1: the page table of an emergency nobody acknowledges, by hand."""
    setup = SUNDAY_2AM - timedelta(days=7)
    await add_site(db, setup)
    staff = {C: await add_staff(db, setup, telegram_id=101),
             INV: await add_staff(db, setup, telegram_id=102, role="investigator"),
             P: await add_staff(db, setup, telegram_id=103, role="pi"),
             A: await _study_staff(db, setup, "admin", 104),
             M: await _study_staff(db, setup, "medical_monitor", 105)}
    name: dict[int | None, str] = {v: k for k, v in staff.items()}
    async with db.write() as session:  # the site's rota, as `engage oncall set` writes it
        for who, days, hours in (("coordinator", "weekdays", "08:00-18:00"),
                                 ("investigator", "all", "18:00-08:00")):
            await oncall.set_rule(session, site_id="BJ01", who=who, days=days, hours=hours,
                                  now=setup, actor=ACTOR, reason="rota")
        shown = await oncall.show(session, protocol, "BJ01", SUNDAY_2AM)
    assert (shown["on_call"], shown["at_local"], shown["source"]) == (
        "investigator", "2026-03-08 02:00", "site")
    await enrol(db, protocol, setup, phone=PATIENT_PHONE, dose_time="21:00")
    conversation = Conversation(db, protocol, SimulatedClock(SUNDAY_2AM))
    [reply] = await _sms(conversation, PATIENT_PHONE, "I can't breathe", SUNDAY_2AM, 1)
    assert reply == catalogue.render("report.reply_emergency", "en")

    # Nobody acknowledges: the tick runs every 5 minutes for two hours.
    for minutes in range(5, 125, 5):
        await escalation.escalate(db, protocol, SUNDAY_2AM + timedelta(minutes=minutes))
    table: dict[str, list[str]] = {}
    for page in await _pages(db):
        local = page.due_at.astimezone(SHANGHAI).strftime("%H:%M")
        table.setdefault(local, []).append(name[page.staff_id])
    everyone = [INV, C, P, A, M]
    assert table == {
        "02:00": [INV],
        "02:15": [INV, C],  # each step pages again everyone paged before
        "02:30": [INV, C, P],  # the chain's top...
        "02:45": [INV, C, P],  # ...paged top_pages (2) times, then
        "03:00": everyone,  # the study admins and the medical monitor
        "03:30": everyone,  # then all of them every repeat_minutes (30)
        "04:00": everyone,
    }
    assert Counter(name[p.staff_id] for p in await _pages(db)) == {INV: 7, C: 6, P: 5, A: 3,
                                                                      M: 3}
    async with db.read() as session:
        alert = (await session.execute(select(Alert))).scalar_one()
        first = (await session.execute(select(AlertEvent).where(
            AlertEvent.kind == "paged").order_by(AlertEvent.step))).scalars().first()
    assert first is not None
    assert "on call: investigator" in first.detail
    assert (alert.status, alert.pages, alert.unreached_at) == ("open", 7, None)
    assert alert.next_escalation_at == SUNDAY_2AM + timedelta(hours=2, minutes=30)


async def test_a_site_with_nobody_reachable_tells_the_patient_the_site_phone_and_120(
        db: Database, protocol: Protocol, clock: SimulatedClock,
        caplog: pytest.LogCaptureFixture) -> None:
    """Acceptance 2: the patient gets the site's phone and 120, every admin is told by every
    route, /healthz names the alarm until somebody acknowledges."""
    now = clock.now()
    await add_site(db, now, phone="+861069156114")
    await add_staff(db, now, telegram_id=302, role="monitor")  # monitors are never paged
    admin = await _study_staff(db, now, "admin", 301)
    await enrol(db, protocol, now, phone=PATIENT_PHONE, language="zh")
    conversation = Conversation(db, protocol, clock)
    server = Server(db=db, parts=lambda: {"scheduler": True})
    async with http_client(server) as client:
        assert (await client.get("/healthz")).status == 200
        caplog.set_level(logging.ERROR)
        [reply] = await _sms(conversation, PATIENT_PHONE, "我胸痛，喘不上气", now, 2)
        assert reply == catalogue.render("report.reply_unreached", "zh", phone="+861069156114")
        assert "120" in reply
        assert catalogue.render("report.reply_emergency", "zh") != reply
        assert any("nobody at site BJ01" in r.getMessage() for r in caplog.records
                   if r.levelno == logging.ERROR)
        async with db.read() as session:
            alert = (await session.execute(select(Alert))).scalar_one()
            told = (await session.execute(select(OutboundMessage).where(
                OutboundMessage.staff_id == admin))).scalars().all()
        assert {t.template_id for t in told} == {"alert.page", "alert.unreached"}
        assert alert.unreached_at == now
        response = await client.get("/healthz")
        body = await response.json()
        assert (response.status, body["failing"], body["unreached_alerts"]) == (
            503, ["paging"], [alert.id])
        # The English reply, and the one for a site without a phone, say 120 too.
        assert "120" in catalogue.render("report.reply_unreached", "en", phone="1")
        for language in ("zh", "en"):
            assert "120" in catalogue.render("report.reply_unreached_no_phone", language)
        # The admin acknowledges (Telegram): the alarm ends.
        await conversation.handle(InboundEvent("telegram", "u1", "301", f"/ack {alert.id}",
                                               None, now, {"chat_id": 301}))
        response = await client.get("/healthz")
        assert response.status == 200
        assert (await response.json())["paging"] is True


async def test_an_investigator_acknowledges_by_sms_and_another_site_learns_nothing(
        db: Database, protocol: Protocol, clock: SimulatedClock) -> None:
    """Acceptance 3: ACK N / 确认 N from a registered phone; another site's staff sending
    ACK N gets the very answer of an alert that does not exist, and nothing changes."""
    now = clock.now()
    await add_site(db, now)
    await add_site(db, now, site="SH01")
    investigator = await add_staff(db, now, telegram_id=None, phone=INVESTIGATOR_PHONE,
                                   role="investigator", language="en")
    await add_staff(db, now, telegram_id=None, phone=OTHER_PHONE, role="investigator",
                    site="SH01", language="en")
    await enrol(db, protocol, now, phone=PATIENT_PHONE)
    conversation = Conversation(db, protocol, clock)
    await _sms(conversation, PATIENT_PHONE, "fever 38.9 and chills", now, 3)
    [page] = await _pages(db)
    assert page.channel == "sms"
    async with db.read() as session:
        alert = (await session.execute(select(Alert))).scalar_one()
    assert f"ACK {alert.id}" in page.body
    assert "Telegram" not in page.body

    # Staff of another site: the same neutral answer as for an alert that does not exist.
    other = await _sms(conversation, OTHER_PHONE, f"ACK {alert.id}", now, 4)
    assert other == [catalogue.render("alert.error_not_found", "en", id=alert.id)]
    missing = await _sms(conversation, OTHER_PHONE, f"ACK {alert.id + 1000}", now, 5)
    assert missing == [catalogue.render("alert.error_not_found", "en", id=alert.id + 1000)]
    async with db.read() as session:
        unchanged = await session.get(Alert, alert.id)
        assert unchanged is not None
        assert unchanged.status == "open"

    ack_at = clock.advance(timedelta(minutes=3))
    done = await _sms(conversation, INVESTIGATOR_PHONE, f"ack {alert.id}", ack_at, 6)
    assert done == [catalogue.render("alert.acknowledged_sms", "en", id=alert.id)]
    async with db.read() as session:
        acked = await session.get(Alert, alert.id)
        inbound = (await session.execute(select(AuditEntry).where(
            AuditEntry.entity == "alerts", AuditEntry.field == "status",
            AuditEntry.new_value == "acknowledged"))).scalar_one()
    assert acked is not None
    assert (acked.status, acked.acknowledged_by, acked.acknowledged_at) == (
        "acknowledged", investigator, ack_at)
    assert inbound.inbound_id is not None  # the change names the SMS that made it
    assert inbound.actor_id == str(investigator)
    resolved = await _sms(conversation, INVESTIGATOR_PHONE,
                          f"确认 {alert.id}", ack_at, 7)
    assert resolved == [catalogue.render("alert.already_acknowledged", "en", id=alert.id)]
    closed = await _sms(conversation, INVESTIGATOR_PHONE,
                        f"RESOLVE {alert.id} called the patient back", ack_at, 8)
    assert closed == [catalogue.render("alert.resolved", "en", id=alert.id)]


def test_sms_words_both_languages() -> None:
    assert parse("ACK 12") == ("ack", 12, "")
    assert parse("确认12") == ("ack", 12, "")
    assert parse("确认 １２") == ("ack", 12, "")  # full-width digits
    assert parse("处理 12 已电话随访") == ("resolve", 12, "已电话随访")
    assert parse("RESOLVE 12 Called Back") == ("resolve", 12, "Called Back")
    assert parse("hello") is None
    assert parse("ACK") is None


async def test_an_acknowledged_sae_candidate_is_reminded_until_reported_to_the_sponsor(
        db: Database, protocol: Protocol, clock: SimulatedClock) -> None:
    """Acceptance 4: reminders at deadline - 4 h and at the deadline, until recorded."""
    now = clock.now()
    await add_site(db, now)
    investigator = await add_staff(db, now, telegram_id=None, phone=INVESTIGATOR_PHONE,
                                   role="investigator")
    pi = await add_staff(db, now, telegram_id=403, role="pi")
    await enrol(db, protocol, now, phone=PATIENT_PHONE)
    conversation = Conversation(db, protocol, clock)
    await _sms(conversation, PATIENT_PHONE, "I was admitted to hospital last night", now, 9)
    async with db.read() as session:
        alert = (await session.execute(select(Alert))).scalar_one()
    assert alert.sae_deadline_at == now + timedelta(hours=24)
    sms_page = next(p for p in await _pages(db) if p.channel == "sms")
    assert "2026-03-03 08:00 Asia/Shanghai (2026-03-03 00:00 UTC)" in sms_page.body
    await _sms(conversation, INVESTIGATOR_PHONE, f"ACK {alert.id}", now, 10)

    async def reminders() -> list[OutboundMessage]:
        async with db.read() as session:
            return list((await session.execute(select(OutboundMessage).where(
                OutboundMessage.template_id == "alert.sae_reminder")
                .order_by(OutboundMessage.id))).scalars())

    deadline = now + timedelta(hours=24)
    assert await escalation.sae_reminders(db, protocol, deadline - timedelta(hours=4, minutes=1)) \
        == 0
    assert await escalation.sae_reminders(db, protocol, deadline - timedelta(hours=4)) == 1
    assert await escalation.sae_reminders(db, protocol, deadline - timedelta(hours=4)) == 0
    first = await reminders()
    assert {(r.staff_id, r.channel) for r in first} == {(investigator, "sms"), (pi, "telegram")}
    telegram = next(r for r in first if r.channel == "telegram")
    for shown in ("2026-03-03 08:00 Asia/Shanghai", "2026-03-03 00:00 UTC"):
        assert shown in telegram.body  # the site's local time with UTC beside it
    assert [c["action"] for c in telegram.choices] == [f"alert:sae_reported:{alert.id}"]
    assert await escalation.sae_reminders(db, protocol, deadline) == 1
    assert len(await reminders()) == 4

    # Recorded as reported (the button): no reminder after; the change is audited.
    reported_at = clock.advance(deadline + timedelta(minutes=10) - clock.now())
    await conversation.handle(InboundEvent("telegram", "u2", "403", "", f"alert:sae_reported:"
                                           f"{alert.id}", reported_at, {"chat_id": 403}))
    async with db.read() as session:
        final = await session.get(Alert, alert.id)
        rows = (await session.execute(select(AuditEntry).where(
            AuditEntry.entity == "alerts", AuditEntry.field == "sae_reported_at"))).scalars().all()
    assert final is not None
    assert (final.sae_reported_by, final.sae_next_reminder_at) == (pi, None)
    assert final.sae_reported_at is not None
    assert [(r.actor_id, r.reason) for r in rows] == [(str(pi), "reported to sponsor")]
    assert await escalation.sae_reminders(db, protocol, deadline + timedelta(days=1)) == 0
    assert len(await reminders()) == 4


async def _telegram(conversation: Conversation, user: int, text: str, n: int) -> list[str]:
    handled = await conversation.handle(InboundEvent(
        "telegram", f"t{n}", str(user), text, None, conversation.clock.now(), {"chat_id": user}))
    async with conversation.db.read() as session:
        rows = (await session.execute(select(OutboundMessage).where(
            OutboundMessage.dedupe_key.like(f"reply:{handled.inbound_id}:%"))
            .order_by(OutboundMessage.id))).scalars().all()
    return [r.body for r in rows]


async def test_staff_see_who_is_on_call_and_review_reports(
        db: Database, protocol: Protocol) -> None:
    """/oncall in the site's time with UTC beside it; /reviewed N|all records who and when;
    a monitor reviews nothing."""
    clock = SimulatedClock(SUNDAY_2AM)
    await add_site(db, clock.now())
    coordinator = await add_staff(db, clock.now(), telegram_id=501)
    await add_staff(db, clock.now(), telegram_id=502, role="monitor")
    await enrol(db, protocol, clock.now(), phone=PATIENT_PHONE)
    conversation = Conversation(db, protocol, clock)
    [shown] = await _telegram(conversation, 501, "/oncall", 1)
    assert shown == catalogue.render(
        "alert.oncall_now", "en", site="BJ01", local="2026-03-08 02:00 Asia/Shanghai",
        utc="2026-03-07 18:00 UTC", who=catalogue.render("alert.oncall_role_investigator", "en"))
    for n, text in enumerate(("a mild headache", "a bit tired today"), start=10):
        await _sms(conversation, PATIENT_PHONE, text, clock.now(), n)
    async with db.read() as session:
        reports = (await session.execute(select(SymptomReport).order_by(
            SymptomReport.id))).scalars().all()
    assert [r.tier for r in reports] == ["routine", "routine"]
    assert await _telegram(conversation, 502, f"/reviewed {reports[0].id}", 2) == [
        catalogue.render("alert.error_not_permitted", "en", id=reports[0].id)]
    assert await _telegram(conversation, 501, f"/reviewed {reports[0].id}", 3) == [
        catalogue.render("alert.reports_reviewed", "en", count=1)]
    assert await _telegram(conversation, 501, "/reviewed all", 4) == [
        catalogue.render("alert.reports_reviewed", "en", count=1)]
    assert await _telegram(conversation, 501, f"/reviewed {reports[0].id}", 5) == [
        catalogue.render("alert.report_not_found", "en", id=reports[0].id)]
    async with db.read() as session:
        done = (await session.execute(select(SymptomReport))).scalars().all()
        trail = (await session.execute(select(AuditEntry).where(
            AuditEntry.entity == "symptom_reports", AuditEntry.field == "reviewed_by")))\
            .scalars().all()
    assert {(r.reviewed_by, r.reviewed_at) for r in done} == {(coordinator, clock.now())}
    assert all(e.inbound_id is not None and e.actor_id == str(coordinator) for e in trail)
    assert len(trail) == 2

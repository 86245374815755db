"""Acceptance 2-4 at the study/scheduler level: page at once, escalate up the chain on a
simulated clock, stop on acknowledgement, refuse an empty resolution, survive restarts, audit
everything, and keep other sites out."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import select

from bot import staff_alerts
from engage.clock import SimulatedClock
from scheduler import escalation, tick
from storage.audit import Actor
from storage.db import Database
from storage.models import (
    Alert,
    AlertEvent,
    AuditEntry,
    OutboundMessage,
    Patient,
    Staff,
    SymptomReport,
)
from study import enrolment
from study.reports import receive_report
from trial.enrolment import Enrolment
from trial.protocol import Protocol

CLI = Actor.cli("test")


@dataclass
class World:
    patient_id: int
    coordinator: int
    investigator: int
    pi: int
    monitor: int
    other_site: int
    admin: int


async def make_world(db: Database, protocol: Protocol, now: datetime, *,
                     with_investigator: bool = True) -> World:
    async with db.write() as s:
        for site in ("S01", "S02"):
            await enrolment.add_site(s, site_id=site, name=f"Hospital {site}",
                                     tz="Asia/Shanghai", phone=None, now=now, actor=CLI)

        async def staff(site: str | None, role: str, tg: int | None, phone: str | None = None,
                        language: str = "en") -> int:
            member = await enrolment.add_staff(s, site_id=site, role=role, name=f"{role} {site}",
                                               telegram_id=tg, phone=phone, language=language,
                                               now=now, actor=CLI)
            return member.id

        coordinator = await staff("S01", "coordinator", 1001, "+8613800000001", "zh")
        investigator = await staff("S01", "investigator", 1002) if with_investigator else -1
        pi = await staff("S01", "pi", 1003)
        monitor = await staff("S01", "monitor", 1004)
        other = await staff("S02", "coordinator", 2001)
        admin = await staff(None, "admin", 9001)
        patient, _ = await enrolment.enroll(s, protocol, Enrolment(
            subject_id="S01-007", site_id="S01", baseline=date(2026, 2, 2), dose_time="08:00",
            language="zh", phone="+8613900000007", tz=None), now=now, actor=CLI)
    return World(patient.id, coordinator, investigator, pi, monitor, other, admin)


async def report(db: Database, protocol: Protocol, world: World, text: str,
                 now: datetime) -> list[str]:
    async with db.write() as s:
        patient = await s.get(Patient, world.patient_id)
        assert patient is not None
        replies = await receive_report(s, protocol, patient, text, now=now, inbound_id=None)
    return [r.message_id for r in replies]


async def pages(db: Database) -> list[OutboundMessage]:
    async with db.read() as s:
        return list((await s.execute(select(OutboundMessage).where(
            OutboundMessage.dedupe_key.like("alert:%")).order_by(OutboundMessage.id)))
            .scalars().all())


async def staff_command(db: Database, protocol: Protocol, staff_id: int, name: str, args: str,
                        now: datetime) -> list[str]:
    async with db.write() as s:
        member = await s.get(Staff, staff_id)
        assert member is not None
        handler = {"ack": staff_alerts.ack, "resolve": staff_alerts.resolve,
                   "alerts": staff_alerts.list_alerts}[name]
        replies = await handler(s, protocol, member, args, now=now)
    return [r.message_id for r in replies]


async def test_fever_sms_pages_and_escalates_until_acknowledged(
        db: Database, db_url: str, protocol: Protocol, clock: SimulatedClock) -> None:
    world = await make_world(db, protocol, clock.now())
    received = clock.advance(timedelta(hours=1))
    assert await report(db, protocol, world, "发烧38.6度", received) == ["report.reply_same_day"]

    first = await pages(db)
    alert_id = first[0].alert_id
    assert {(p.staff_id, p.channel) for p in first} == {
        (world.coordinator, "telegram"), (world.coordinator, "sms")}
    assert all(p.lane == "safety" and p.due_at == received for p in first)
    telegram = next(p for p in first if p.channel == "telegram")
    assert [c["action"] for c in telegram.choices] == [f"alert:ack:{alert_id}",
                                                       f"alert:resolve:{alert_id}"]
    for expected in ("S01-007", "发烧38.6度", "2026-03-02 01:00 UTC", "09:00 Asia/Shanghai"):
        assert expected in telegram.body
    sms = next(p for p in first if p.channel == "sms")
    assert "S01-007" in sms.body
    assert "发烧" not in sms.body
    assert not any(w.lower() in sms.body.lower() for w in protocol.sms.forbidden_words)

    # Nobody acknowledges: nothing before the same-day timeout, then the investigator with the
    # coordinator again, then the PI with both (the ladder is cumulative, issue 17).
    await escalation.escalate(db, protocol, clock.advance(timedelta(minutes=119)))
    assert len(await pages(db)) == 2
    at = clock.advance(timedelta(minutes=1))
    assert await escalation.escalate(db, protocol, at) == 1
    assert await escalation.escalate(db, protocol, at) == 0  # twice at the same instant
    restarted = Database(db_url)  # a restart: a new process, a new Database
    try:
        assert await escalation.escalate(restarted, protocol, at) == 0
    finally:
        await restarted.dispose()
    c, i, top = world.coordinator, world.investigator, world.pi
    assert [p.staff_id for p in (await pages(db))[2:]] == [c, c, i]
    await escalation.escalate(db, protocol, clock.advance(timedelta(minutes=120)))
    await escalation.escalate(db, protocol, clock.advance(timedelta(minutes=120)))
    assert [p.staff_id for p in (await pages(db))[5:]] == [c, c, i, top] * 2  # top, repeated

    ack_at = clock.advance(timedelta(minutes=5))
    assert await staff_command(db, protocol, world.coordinator, "ack", str(alert_id),
                               ack_at) == ["alert.acknowledged"]
    count = len(await pages(db))
    assert await escalation.escalate(db, protocol, clock.advance(timedelta(hours=6))) == 0
    assert len(await pages(db)) == count

    assert await staff_command(db, protocol, world.coordinator, "resolve", f"{alert_id}  ",
                               clock.now()) == ["alert.error_note_required"]
    assert await staff_command(db, protocol, world.coordinator, "resolve",
                               f"{alert_id} called patient, seen in clinic", clock.now()) == [
        "alert.resolved"]

    async with db.read() as s:
        alert = await s.get(Alert, alert_id)
        events = (await s.execute(select(AlertEvent).where(AlertEvent.alert_id == alert_id)
                                  .order_by(AlertEvent.step))).scalars().all()
        trail = (await s.execute(select(AuditEntry).where(
            AuditEntry.entity == "alerts", AuditEntry.entity_id == str(alert_id))
            .order_by(AuditEntry.id))).scalars().all()
    assert alert is not None
    assert (alert.status, alert.acknowledged_by, alert.resolved_by) == (
        "resolved", world.coordinator, world.coordinator)
    assert alert.acknowledged_at == ack_at
    assert alert.resolution_note == "called patient, seen in clinic"
    assert [(e.step, e.kind, e.level) for e in events] == [
        (0, "opened", 0), (1, "paged", 0), (2, "paged", 1), (3, "paged", 2), (4, "paged", 3),
        (5, "acknowledged", 3), (6, "resolved", 3)]
    assert [e.action for e in trail if e.action in ("create", "page")] == ["create"] + ["page"] * 4
    staff_rows = [e for e in trail if e.actor_kind == "staff"]
    assert {e.field for e in staff_rows} >= {"status", "acknowledged_by", "resolution_note"}
    assert all(e.actor_id == str(world.coordinator) and e.at.tzinfo is UTC for e in staff_rows)


async def test_tick_runs_the_escalation_step() -> None:
    assert "escalation" in [step.name for step in tick.STEPS]


async def test_other_sites_cannot_see_or_acknowledge(db: Database, protocol: Protocol,
                                                     clock: SimulatedClock) -> None:
    world = await make_world(db, protocol, clock.now())
    await report(db, protocol, world, "I have chest pain", clock.now())
    alert_id = (await pages(db))[0].alert_id
    missing = await staff_command(db, protocol, world.other_site, "ack", "99999", clock.now())
    other = await staff_command(db, protocol, world.other_site, "ack", str(alert_id), clock.now())
    assert other == missing == ["alert.error_not_found"]
    assert await staff_command(db, protocol, world.other_site, "alerts", "", clock.now()) == [
        "alert.list_empty"]
    assert await staff_command(db, protocol, world.monitor, "ack", str(alert_id),
                               clock.now()) == ["alert.error_not_permitted"]
    assert await staff_command(db, protocol, world.monitor, "alerts", "", clock.now()) == [
        "alert.list_header", "alert.list_item"]
    assert await staff_command(db, protocol, world.admin, "alerts", "", clock.now()) == [
        "alert.list_header", "alert.list_item"]
    async with db.read() as s:
        alert = await s.get(Alert, alert_id)
        queries = (await s.execute(select(AuditEntry).where(AuditEntry.action == "query",
                                                            AuditEntry.entity == "alerts")))
        assert len(queries.scalars().all()) == 3
    assert alert is not None
    assert (alert.status, alert.tier) == ("open", "emergency")


async def test_emergency_timeout_and_a_level_without_staff_is_skipped(
        db: Database, protocol: Protocol, clock: SimulatedClock) -> None:
    world = await make_world(db, protocol, clock.now(), with_investigator=False)
    assert await report(db, protocol, world, "can't breathe", clock.now()) == [
        "report.reply_emergency"]
    await escalation.escalate(db, protocol, clock.advance(timedelta(minutes=15)))
    c = world.coordinator
    assert [p.staff_id for p in (await pages(db))[2:]] == [c, c, world.pi]
    async with db.read() as s:
        event = (await s.execute(select(AlertEvent).where(AlertEvent.step == 2))).scalar_one()
    assert "skipped investigator" in event.detail


async def test_possible_sae_shows_the_sponsor_deadline(db: Database, protocol: Protocol,
                                                       clock: SimulatedClock) -> None:
    world = await make_world(db, protocol, clock.now())
    await report(db, protocol, world, "昨天住院了", clock.now())
    telegram = next(p for p in await pages(db) if p.channel == "telegram")
    async with db.read() as s:
        alert = await s.get(Alert, telegram.alert_id)
    assert alert is not None
    assert alert.sae_deadline_at == clock.now() + timedelta(hours=24)
    assert "2026-03-03 00:00 UTC" in telegram.body


async def test_routine_reports_are_not_paged(db: Database, protocol: Protocol,
                                             clock: SimulatedClock) -> None:
    world = await make_world(db, protocol, clock.now())
    assert await report(db, protocol, world, "有点头痛", clock.now()) == ["report.reply_routine"]
    assert await pages(db) == []
    async with db.read() as s:
        assert (await s.execute(select(Alert))).first() is None


async def test_three_fever_messages_in_ten_minutes_are_one_alert_with_one_chain(
        db: Database, protocol: Protocol, clock: SimulatedClock) -> None:
    world = await make_world(db, protocol, clock.now())
    first_at = clock.advance(timedelta(hours=1))
    for minutes, text in ((0, "发烧38.6度"), (4, "还是发烧，38.8"), (9, "fever 38.9 still")):
        assert await report(db, protocol, world, text, first_at + timedelta(minutes=minutes)) \
            == ["report.reply_same_day"]
    async with db.read() as s:
        opened = (await s.execute(select(Alert))).scalars().all()
        reports = (await s.execute(select(SymptomReport))).scalars().all()
        joined = (await s.execute(select(AlertEvent.detail).where(
            AlertEvent.kind == "report_added"))).scalars().all()
    assert [(a.kind, a.tier) for a in opened] == [("symptom", "same_day")]
    assert len(reports) == 3
    assert sorted(joined) == sorted(f"report {r.id}" for r in reports[1:])
    assert len(await pages(db)) == 2  # the coordinator once, by Telegram and SMS: one chain
    # After the window a new report opens its own alert; an emergency always does.
    late = first_at + timedelta(minutes=11)
    assert await report(db, protocol, world, "又发烧了 38.7", late) == ["report.reply_same_day"]
    assert await report(db, protocol, world, "我胸口剧痛，喘不上气", late) == [
        "report.reply_emergency"]
    async with db.read() as s:
        tiers = (await s.execute(select(Alert.tier).order_by(Alert.id))).scalars().all()
    assert tiers == ["same_day", "same_day", "emergency"]
    # Two hours after the first report, its alert goes one step up the chain, not three.
    for minutes in (120, 130):
        await escalation.escalate(db, protocol, first_at + timedelta(minutes=minutes))
    async with db.read() as s:
        first = (await s.execute(select(Alert).order_by(Alert.id))).scalars().first()
    assert first is not None
    assert first.level == 1

"""Planning doses in the database: reminders at the local dose time (three zones, DST), none for
inactive patients, idempotent passes (also two concurrent ticks on PostgreSQL), wording,
follow-ups, cut-offs and the patient's answers, all audited."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import func, select

from messages import catalogue
from scheduler.doses import plan_doses
from scheduler.tick import run_tick
from storage import audit
from storage.audit import Actor
from storage.db import Database
from storage.models import AuditEntry, DoseRecord, OutboundMessage, Patient, Site, Visit
from study.dose_answers import answer_dose
from trial.protocol import Protocol

CLI = Actor.cli("test")
T0 = datetime(2026, 3, 1, 0, 0, tzinfo=UTC)


async def make_patient(db: Database, subject: str, *, tz: str = "Asia/Shanghai",
                       dose_time: str = "08:00", baseline: date = date(2026, 3, 2),
                       language: str = "en", status: str = "active", opted_out: bool = False,
                       telegram_id: int | None = None, phone: str | None = None) -> int:
    async with db.write() as session:
        if await session.get(Site, "S01") is None:
            session.add(Site(id="S01", name="One", tz="Asia/Shanghai", created_at=T0))
            await session.flush()
        patient = Patient(subject_id=subject, site_id="S01", baseline=baseline,
                          dose_time=dose_time, tz=tz, language=language, status=status,
                          opted_out=opted_out, phone=phone,
                          telegram_id=telegram_id if phone is None else None,
                          telegram_reachable=True, sms_reachable=True, created_at=T0)
        if telegram_id is None and phone is None:
            patient.telegram_id = abs(hash(subject)) % 10**9
        await audit.create(session, patient, at=T0, actor=CLI)
        return patient.id


async def messages(db: Database, prefix: str = "dose:") -> list[OutboundMessage]:
    async with db.read() as session:
        return list((await session.execute(select(OutboundMessage).where(
            OutboundMessage.dedupe_key.like(f"{prefix}%")).order_by(OutboundMessage.id)))
            .scalars())


async def dose_of(db: Database, patient_id: int, day: date) -> DoseRecord:
    async with db.read() as session:
        return (await session.execute(select(DoseRecord).where(
            DoseRecord.patient_id == patient_id, DoseRecord.local_date == day))).scalar_one()


async def test_reminders_at_the_local_dose_time_in_three_zones_across_dst(
        db: Database, protocol: Protocol) -> None:
    ids = {tz: await make_patient(db, f"P-{tz.split('/')[1]}", tz=tz, dose_time="08:00",
                                  baseline=date(2026, 3, 5))
           for tz in ("Asia/Shanghai", "Asia/Urumqi", "America/New_York")}
    # Tick every 30 minutes through the New York spring-forward (2026-03-08).
    now = datetime(2026, 3, 4, 0, 0, tzinfo=UTC)
    while now < datetime(2026, 3, 11, 0, 0, tzinfo=UTC):
        await plan_doses(db, protocol, now)
        now += timedelta(minutes=30)
    rows = await messages(db, "dose:reminder:")
    async with db.read() as session:
        doses = {d.id: d for d in (await session.execute(select(DoseRecord))).scalars()}
    ny = [doses[m.dose_id] for m in rows if m.patient_id == ids["America/New_York"]]
    assert [d.due_at.hour for d in ny] == [13, 13, 13, 12, 12, 12]  # EST, then EDT
    for message in rows:
        dose = doses[message.dose_id]
        assert message.due_at == dose.due_at  # the local dose time, never before
        assert dose.reminded_at is not None
        assert dose.reminded_at - dose.due_at < timedelta(minutes=30)  # within one tick
    assert len(rows) == 3 * 6
    shanghai = [doses[m.dose_id] for m in rows if m.patient_id == ids["Asia/Shanghai"]]
    assert {d.due_at.hour for d in shanghai} == {0}


async def test_no_dose_for_paused_withdrawn_or_opted_out_patients(
        db: Database, protocol: Protocol) -> None:
    for subject, status, opted_out in (("PAUSED", "paused", False),
                                       ("GONE", "withdrawn", False), ("STOPPED", "active", True)):
        await make_patient(db, subject, status=status, opted_out=opted_out)
    for hours in range(0, 72, 6):
        await run_tick(db, protocol, T0 + timedelta(hours=hours))
    async with db.read() as session:
        assert (await session.execute(select(func.count()).select_from(DoseRecord))).scalar() == 0
    assert await messages(db) == []


async def test_a_planned_dose_is_cancelled_when_the_patient_pauses(
        db: Database, protocol: Protocol) -> None:
    patient_id = await make_patient(db, "P1")
    await plan_doses(db, protocol, datetime(2026, 3, 2, 0, 0, tzinfo=UTC))  # day 0 + day 1 row
    async with db.write() as session:
        patient = await session.get(Patient, patient_id)
        assert patient is not None
        audit.change(session, patient, at=T0, actor=CLI, reason="test", status="paused")
    await plan_doses(db, protocol, datetime(2026, 3, 3, 0, 0, tzinfo=UTC))
    cancelled = await dose_of(db, patient_id, date(2026, 3, 3))
    assert (cancelled.state, cancelled.reminded_at) == ("cancelled", None)
    assert [m.dose_id for m in await messages(db, "dose:reminder:")] == [
        (await dose_of(db, patient_id, date(2026, 3, 2))).id]


async def test_two_passes_plan_nothing_twice(db: Database, protocol: Protocol) -> None:
    await make_patient(db, "P1")
    at = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)
    first = await plan_doses(db, protocol, at)
    second = await plan_doses(db, protocol, at)
    assert (first, second) == (3, 0)  # today's and tomorrow's rows, today's reminder
    async with db.read() as session:
        assert (await session.execute(select(func.count()).select_from(DoseRecord))).scalar() == 2
    assert len(await messages(db)) == 1


@pytest.mark.postgres
async def test_two_concurrent_ticks_plan_each_dose_once(pg_db: Database,
                                                        protocol: Protocol) -> None:
    for i in range(60):
        await make_patient(pg_db, f"P{i:02d}", tz=("Asia/Shanghai", "America/New_York")[i % 2])
    other = Database(pg_db.url)
    try:
        for hours in range(0, 48, 1):
            at = datetime(2026, 3, 1, 12, 0, tzinfo=UTC) + timedelta(hours=hours)
            await asyncio.gather(plan_doses(pg_db, protocol, at), plan_doses(other, protocol, at))
    finally:
        await other.dispose()
    async with pg_db.read() as session:
        per_day = (await session.execute(select(DoseRecord.patient_id, DoseRecord.local_date,
                                                func.count()).group_by(
            DoseRecord.patient_id, DoseRecord.local_date))).all()
        keys = (await session.execute(select(OutboundMessage.dedupe_key))).scalars().all()
        creates = (await session.execute(select(func.count()).select_from(AuditEntry).where(
            AuditEntry.entity == "doses", AuditEntry.action == "create"))).scalar()
    assert per_day
    assert all(n == 1 for *_, n in per_day)
    assert len(keys) == len(set(keys)) > 60
    assert creates == len(per_day)


async def test_reminder_wording_and_buttons(db: Database, protocol: Protocol) -> None:
    await make_patient(db, "EN", language="en", baseline=date(2026, 3, 2))
    await make_patient(db, "ZH", language="zh", baseline=date(2026, 3, 2), phone="+8613800000001")
    await plan_doses(db, protocol, datetime(2026, 3, 2, 0, 0, tzinfo=UTC))
    by_language = {m.language: m for m in await messages(db, "dose:reminder:")}
    en, zh = by_language["en"], by_language["zh"]
    assert en.body == catalogue.render("dose.reminder", "en", label="study medication",
                                       capsules=3)
    assert "3 capsules" in en.body
    assert (en.channel, zh.channel) == ("telegram", "sms")
    # SMS prints 1, 2, 3 (taken, not taken, later); Report is a Telegram button (issue 16).
    assert [c["sms_word"] for c in zh.choices] == ["1", "2", "3", ""]
    assert [c["label"] for c in zh.choices] == ["已服", "未服", "稍后提醒", "报告症状"]
    assert [c["action"] for c in en.choices] == [
        f"dose:taken:{en.dose_id}", f"dose:missed:{en.dose_id}", f"dose:snooze:{en.dose_id}",
        "report:start"]
    assert en.lane == "routine"
    for message in (en, zh):
        text = message.body.casefold()
        assert not [w for w in protocol.sms.forbidden_words if w.casefold() in text]
    assert len(zh.body) <= 70


async def test_every_dose_message_is_free_of_forbidden_words_and_double_doses(
        protocol: Protocol) -> None:
    for language in ("en", "zh"):
        for message_id in catalogue.message_ids(language):
            if not message_id.startswith("dose."):
                continue
            text = catalogue.render(message_id, language, label="研究用药", capsules=3,
                                    hours=12, minutes=30, max=2, latest="20:30").casefold()
            assert not [w for w in protocol.sms.forbidden_words if w.casefold() in text]
            assert "double" not in text
            assert "加倍" not in text
            assert len(text) <= (70 if language == "zh" else 160), message_id


async def test_open_label_phase_uses_the_protocols_wording(db: Database,
                                                           protocol: Protocol) -> None:
    baseline = date(2026, 3, 2)
    await make_patient(db, "P1", baseline=baseline)
    day = baseline + timedelta(days=7 * 24)  # week 24: open-label
    at = datetime.combine(day, datetime.min.time(), UTC)
    await plan_doses(db, protocol, at - timedelta(days=1))
    await plan_doses(db, protocol, at)
    message = (await messages(db, "dose:reminder:"))[-1]  # the day before's came first
    label = protocol.dose.label["open_label"].en
    assert message.body == catalogue.render("dose.reminder", "en", label=label, capsules=3)


async def test_visit_day_with_a_blood_test_holds_the_home_dose(db: Database,
                                                               protocol: Protocol) -> None:
    protocol = protocol.model_copy(update={"visits": protocol.visits.model_copy(update={
        "table": [v.model_copy(update={"hold_dose": True}) for v in protocol.visits.table]})})
    patient_id = await make_patient(db, "P1", language="zh")
    day = date(2026, 3, 30)  # W4's target
    async with db.write() as session:
        session.add(Visit(patient_id=patient_id, name="W4", target_date=day,
                          window_start=day - timedelta(days=3),
                          window_end=day + timedelta(days=3), scheduled_date=day,
                          status="planned", revision=0, out_of_window=False))
    due = datetime(2026, 3, 30, 0, 0, tzinfo=UTC)
    await plan_doses(db, protocol, due - timedelta(days=1))
    await plan_doses(db, protocol, due)
    by_day = {(await dose_of(db, patient_id, d)).id: d
              for d in (date(2026, 3, 29), date(2026, 3, 30))}
    found = {by_day[m.dose_id]: m for m in await messages(db, "dose:reminder:")}
    assert found[day].template_id == "dose.reminder_hold_for_visit"
    assert found[day].body == catalogue.render("dose.reminder_hold_for_visit", "zh")
    assert found[date(2026, 3, 29)].template_id == "dose.reminder"
    assert (await dose_of(db, patient_id, day)).hold_for_visit == "W4"


async def test_unanswered_dose_gets_one_follow_up_then_closes_as_no_response(
        db: Database, protocol: Protocol) -> None:
    patient_id = await make_patient(db, "P1")
    due = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)
    for minutes in (0, 59, 60, 61, 300, 719, 720, 721):
        await plan_doses(db, protocol, due + timedelta(minutes=minutes))
    dose = await dose_of(db, patient_id, date(2026, 3, 2))
    assert (dose.state, dose.closed_at) == ("no_response", due + timedelta(minutes=720))
    kinds = [m.dedupe_key.rsplit(":", 1)[0] for m in await messages(db)
             if m.dose_id == dose.id]
    assert kinds == ["dose:reminder", "dose:followup"]
    async with db.read() as session:
        changes = (await session.execute(select(AuditEntry).where(
            AuditEntry.entity == "doses", AuditEntry.entity_id == str(dose.id),
            AuditEntry.field == "state").order_by(AuditEntry.id))).scalars().all()
    assert [(c.old_value, c.new_value, c.actor_id) for c in changes] == [
        ("scheduled", "reminded", "planner"), ("reminded", "no_response", "planner")]


async def answer(db: Database, protocol: Protocol, patient_id: int, what: str, at: datetime,
                 dose_id: int | None = None, reason: str | None = None) -> str:
    async with db.write() as session:
        patient = await session.get(Patient, patient_id)
        assert patient is not None
        reply = await answer_dose(session, protocol, patient, what, now=at, dose_id=dose_id,
                                  reason=reason)
    return reply.message_id


async def test_answers_taken_duplicate_and_late_after_the_cutoff(
        db: Database, protocol: Protocol) -> None:
    patient_id = await make_patient(db, "P1")
    due = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)
    await plan_doses(db, protocol, due)
    today = await dose_of(db, patient_id, date(2026, 3, 2))
    assert await answer(db, protocol, patient_id, "taken", due + timedelta(minutes=5),
                        dose_id=today.id) == "dose.taken_ack"
    assert await answer(db, protocol, patient_id, "taken",
                        due + timedelta(minutes=6)) == "dose.taken_ack"  # SMS word, twice
    assert await answer(db, protocol, patient_id, "skip",
                        due + timedelta(minutes=7)) == "dose.already_answered"
    assert (await dose_of(db, patient_id, date(2026, 3, 2))).state == "taken"
    # The next day nobody answers; the answer comes an hour after the cut-off.
    next_due = due + timedelta(days=1)
    for minutes in (0, 60, 720):
        await plan_doses(db, protocol, next_due + timedelta(minutes=minutes))
    assert await answer(db, protocol, patient_id, "taken",
                        next_due + timedelta(minutes=780)) == "dose.late_answer_ack"
    late = await dose_of(db, patient_id, date(2026, 3, 3))
    assert (late.state, late.late_answer, late.late_answer_at) == (
        "no_response", "taken", next_due + timedelta(minutes=780))
    async with db.read() as session:
        actors = set((await session.execute(select(AuditEntry.actor_kind, AuditEntry.actor_id)
                                             .where(AuditEntry.entity == "doses"))).all())
    assert ("patient", "P1") in actors
    assert ("system", "planner") in actors


async def test_snooze_reschedules_a_reminder_until_the_limit(db: Database,
                                                             protocol: Protocol) -> None:
    patient_id = await make_patient(db, "P1")
    due = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)
    await plan_doses(db, protocol, due)
    assert await answer(db, protocol, patient_id, "snooze", due) == "dose.snoozed_ack"
    await plan_doses(db, protocol, due + timedelta(minutes=29))
    assert [m.dedupe_key for m in await messages(db, "dose:snooze:")] == []
    await plan_doses(db, protocol, due + timedelta(minutes=30))
    dose = await dose_of(db, patient_id, date(2026, 3, 2))
    [snoozed] = await messages(db, "dose:snooze:")
    assert (snoozed.dedupe_key, snoozed.due_at) == (f"dose:snooze:{dose.id}:1",
                                                    due + timedelta(minutes=30))
    assert await answer(db, protocol, patient_id, "snooze",
                        due + timedelta(minutes=31)) == "dose.snoozed_ack"
    assert await answer(db, protocol, patient_id, "snooze",
                        due + timedelta(minutes=32)) == "dose.snooze_limit"
    assert await answer(db, protocol, patient_id, "taken",
                        due + timedelta(minutes=40)) == "dose.taken_ack"
    assert (await dose_of(db, patient_id, date(2026, 3, 2))).state == "taken"


async def test_missed_gives_the_protocols_rule_and_nothing_open_says_so(
        db: Database, protocol: Protocol) -> None:
    patient_id = await make_patient(db, "P1")
    due = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)
    assert await answer(db, protocol, patient_id, "taken", due) == "dose.no_open_dose"
    await plan_doses(db, protocol, due)
    assert await answer(db, protocol, patient_id, "missed", due + timedelta(hours=2)) == \
        "dose.missed_rule"
    assert (await dose_of(db, patient_id, date(2026, 3, 2))).state == "missed"
    other = await make_patient(db, "P2")
    mine = (await dose_of(db, patient_id, date(2026, 3, 2))).id
    assert await answer(db, protocol, other, "taken", due, dose_id=mine) == "dose.no_open_dose"

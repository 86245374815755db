"""A scripted population through a whole trial: 146 patients (by default), 6 sites, 3 time
zones, 48 weeks, driven through scheduler.tick.run_tick from event to event, answering their
reminders as their script says; `run_trial` then checks every dose state and the three adherence
figures against what the script says, computed here by hand. Used by the acceptance simulation
(tests/e2e/test_simulation_doses.py) and by bench/simulation.py."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from scheduler.tick import run_tick
from storage import audit
from storage.audit import Actor
from storage.db import Database
from storage.models import DoseRecord, OutboundMessage, Patient, Site
from study import adherence, dose_answers, dose_records
from study.enrolment import change_status
from trial.protocol import Protocol

ZONES = ("Asia/Shanghai", "Asia/Urumqi", "America/New_York")
# One local dose time per zone, chosen so that most zones share instants (fewer ticks).
DOSE_TIMES = {"Asia/Shanghai": "20:00", "Asia/Urumqi": "18:00", "America/New_York": "07:00"}
BEHAVIOURS = ("always", "snoozer", "weekdays", "stops_w10", "paused", "withdrawn", "stop")
FIRST_BASELINE = date(2026, 1, 5)
PAUSE_DAYS = (100, 114)  # paused before day 100's dose, resumed before day 114's
WITHDRAW_DAY = 210  # week 30
STOP_DAY = 150
STOPS_AFTER = 70  # week 10
LATE_ANSWER_DAY = 75  # stops_w10 confirms this day's dose an hour after its cut-off


@dataclass
class Scripted:
    """One simulated patient and what they do."""

    index: int
    subject: str
    site: str
    tz: str
    dose_time: str
    baseline: date
    behaviour: str
    patient_id: int = 0
    # The enrolled row (as enrolled; answers read its id, subject, language and dose time,
    # which the script never changes).
    patient: Patient | None = None
    expected: dict[date, str] = field(default_factory=dict)
    late_taken: set[date] = field(default_factory=set)

    def day(self, local: date) -> int:
        return (local - self.baseline).days

    def instant(self, day: int, hours_before_dose: float) -> datetime:
        hour, minute = map(int, self.dose_time.split(":"))
        local = datetime.combine(self.baseline + timedelta(days=day),
                                 datetime.min.time().replace(hour=hour, minute=minute),
                                 tzinfo=ZoneInfo(self.tz))
        return (local - timedelta(hours=hours_before_dose)).astimezone(UTC)


def cast_patients(count: int, weeks: int) -> list[Scripted]:
    """The patients and, by hand from the script, what each day of theirs must be."""
    people = []
    for i in range(count):
        tz = ZONES[i % 3]
        p = Scripted(i, f"SIM-{i:03d}", f"S0{i % 6 + 1}", tz, DOSE_TIMES[tz],
                     FIRST_BASELINE + timedelta(days=i % 5), BEHAVIOURS[i % 7])
        for day in range(weeks * 7):
            local = p.baseline + timedelta(days=day)
            p.expected[local] = expected_status(p, day, local)
        if p.behaviour == "stops_w10" and weeks * 7 > LATE_ANSWER_DAY:
            p.late_taken.add(p.baseline + timedelta(days=LATE_ANSWER_DAY))
        people.append(p)
    return people


def expected_status(p: Scripted, day: int, local: date) -> str:
    """The script, day by day (the only place that says what each patient does)."""
    if p.behaviour == "always":
        return "taken"
    if p.behaviour == "snoozer":  # odd days: one snooze; even days: two, then at the follow-up
        return "taken" if day % 2 else "late"
    if p.behaviour == "weekdays":
        return "no_response" if local.isoweekday() >= 6 else "taken"
    if p.behaviour == "stops_w10":
        if day >= STOPS_AFTER:
            return "no_response"
        return "skipped" if local.isoweekday() == 3 else "taken"
    if p.behaviour == "paused":
        return "not_scheduled" if PAUSE_DAYS[0] <= day < PAUSE_DAYS[1] else "taken"
    if p.behaviour == "withdrawn":
        return "not_scheduled" if day >= WITHDRAW_DAY else "taken"
    return "not_scheduled" if day >= STOP_DAY else "taken"  # opts out by STOP


def answers_for(p: Scripted, message: Any, local: date) -> list[str]:
    """What the patient answers when a dose message reaches them."""
    day = p.day(local)
    kind = message.dedupe_key.split(":")[1]
    status = p.expected.get(local)
    if status in ("taken",) and p.behaviour != "snoozer":
        return ["taken"] if kind == "reminder" else []
    if status == "skipped":
        return ["skip"] if kind == "reminder" else []
    if p.behaviour == "snoozer":
        if kind == "reminder":
            return ["snooze"]
        if kind == "snooze":
            return ["taken"] if day % 2 else ["snooze", "snooze"]  # the 2nd is over the limit
        return ["taken"]  # the follow-up
    return []


def scripted_events(p: Scripted, weeks: int) -> list[tuple[datetime, str]]:
    """Status changes at their instants (two hours before that day's dose)."""
    last = weeks * 7
    events = []
    if p.behaviour == "paused" and PAUSE_DAYS[1] < last:
        events += [(p.instant(PAUSE_DAYS[0], 2), "pause"), (p.instant(PAUSE_DAYS[1], 2), "resume")]
    if p.behaviour == "withdrawn" and last > WITHDRAW_DAY:
        events.append((p.instant(WITHDRAW_DAY, 2), "withdraw"))
    if p.behaviour == "stop" and last > STOP_DAY:
        events.append((p.instant(STOP_DAY, 2), "stop"))
    for local in p.late_taken:
        events.append((p.instant(p.day(local), -13), "late_taken"))  # cut-off + 1 h
    return events


async def enrol(db: Database, people: list[Scripted], now: datetime) -> None:
    async with db.write() as session:
        for n in range(6):
            await audit.create(session, Site(id=f"S0{n + 1}", name=f"Hospital {n + 1}",
                                             tz="Asia/Shanghai", created_at=now),
                               at=now, actor=Actor.cli("sim"))
        for p in people:
            patient = Patient(subject_id=p.subject, site_id=p.site, baseline=p.baseline,
                              dose_time=p.dose_time, tz=p.tz, language=("zh", "en")[p.index % 2],
                              telegram_id=10_000 + p.index, status="active", opted_out=False,
                              telegram_reachable=True, sms_reachable=True, created_at=now)
            await audit.create(session, patient, at=now, actor=Actor.cli("sim"))
            p.patient_id, p.patient = patient.id, patient


async def apply_event(db: Database, p: Scripted, what: str, now: datetime,
                      protocol: Protocol) -> None:
    async with db.write() as session:
        if what in ("pause", "resume", "withdraw"):
            await change_status(session, p.subject, what, reason="simulation", now=now,
                                actor=Actor.cli("sim"))
        elif what == "stop":  # as the STOP handler does: an audited change by the patient
            patient = await session.get(Patient, p.patient_id)
            assert patient is not None
            audit.change(session, patient, at=now, actor=Actor.patient(p.subject),
                         reason="STOP", opted_out=True)
        else:
            patient = await session.get(Patient, p.patient_id)
            assert patient is not None
            reply = await dose_answers.answer_dose(session, protocol, patient, "taken", now=now)
            assert reply.message_id == "dose.late_answer_ack"


# Built once (the loop asks at every instant): the next dose action and the next planning.
_NEXT_INSTANT = select(
    select(func.min(DoseRecord.next_action_at)).scalar_subquery(),
    select(func.min(Patient.plan_next_at)).where(
        Patient.status == "active", Patient.opted_out.is_(False)).scalar_subquery())
# Every message queued after a given id, with its dose's patient and date when it is about a
# dose (columns: most messages are read only to see what the patient answers, if anything).
_QUEUED_SINCE = (
    select(OutboundMessage.id, OutboundMessage.dedupe_key, OutboundMessage.due_at,
           OutboundMessage.dose_id, DoseRecord.patient_id, DoseRecord.local_date)
    .outerjoin(DoseRecord, DoseRecord.id == OutboundMessage.dose_id)
    .where(OutboundMessage.id > bindparam("seen")).order_by(OutboundMessage.id))
# The doses answered at an instant, loaded together (answer_dose then finds each in the session).
_ANSWERED = select(DoseRecord).where(DoseRecord.id.in_(bindparam("doses", expanding=True)))


async def next_instant(db: Database, after: datetime,
                       session: AsyncSession | None = None) -> datetime | None:
    """The next instant anything is due: a dose action or a patient's planning (read in
    `session` when given, else in a read transaction of its own)."""
    if session is None:
        async with db.read() as own:
            return await next_instant(db, after, own)
    row = (await session.execute(_NEXT_INSTANT)).one()
    # SQLite hands back MIN() of a UTC column as text.
    moments = [m if isinstance(m, datetime) else datetime.fromisoformat(m).replace(tzinfo=UTC)
               for m in row if m is not None]
    return max(min(moments), after) if moments else None


async def answer_messages(db: Database, protocol: Protocol, people: dict[int, Scripted],
                          now: datetime, seen: list[int]) -> datetime | None:
    """Patients answer the dose messages queued since the last instant (`seen[0]`: last id);
    returns the next instant, read in the same transaction (one transaction per instant)."""
    async with db.write() as session:
        messages = (await session.execute(_QUEUED_SINCE, {"seen": seen[0]})).all()
        seen[0] = max([seen[0], *(m.id for m in messages)])
        assert all(m.due_at <= now for m in messages)  # nothing queued before its time
        answers = [(m.dose_id, answer) for m in messages if m.dose_id is not None
                   for answer in answers_for(people[m.patient_id], m, m.local_date)]
        if answers:
            loaded = (await session.execute(
                _ANSWERED, {"doses": sorted({dose_id for dose_id, _ in answers})})).scalars().all()
            owner = {dose.id: people[dose.patient_id].patient for dose in loaded}
            with session.no_autoflush:
                for dose_id, answer in answers:  # in the order the messages were queued
                    await dose_answers.answer_dose(session, protocol, owner[dose_id], answer,
                                                   now=now, dose_id=dose_id)
                await dose_records.flush_audit(session)
        return await next_instant(db, now, session)


async def simulate(db: Database, protocol: Protocol, count: int, weeks: int) -> list[Scripted]:
    people = cast_patients(count, weeks)
    start = datetime.combine(FIRST_BASELINE - timedelta(days=2), datetime.min.time(), UTC)
    await enrol(db, people, start)
    by_id = {p.patient_id: p for p in people}
    events = sorted((at, p.index, what) for p in people for at, what in scripted_events(p, weeks))
    end = max(p.instant(weeks * 7, 0) for p in people) + timedelta(days=1)
    now = start
    seen = [0]
    await run_tick(db, protocol, now)  # the first pass sets every patient's planning instant
    due = await next_instant(db, now)
    while True:
        if events and (due is None or events[0][0] <= due):
            at, index, what = events.pop(0)
            now = max(now, at)
            await apply_event(db, people[index], what, now, protocol)
            due = await next_instant(db, now)
            continue
        if due is None or due > end:
            break
        now = due
        await run_tick(db, protocol, now)
        due = await answer_messages(db, protocol, by_id, now, seen)
    return people


async def check(db: Database, protocol: Protocol, people: list[Scripted], now: datetime,
                weeks: int) -> None:
    async with db.read() as session:
        rows = (await session.execute(select(DoseRecord))).scalars().all()
        by_patient: dict[int, dict[date, DoseRecord]] = {}
        for row in rows:
            by_patient.setdefault(row.patient_id, {})[row.local_date] = row
        for p in people:
            got = by_patient.get(p.patient_id, {})
            if weeks < protocol.study.end_week:  # a slice: what lies beyond is not checked
                got = {d: r for d, r in got.items() if d in p.expected}
            actual = {day: (got[day].state if day in got else "not_scheduled")
                      for day in p.expected}
            actual = {d: ("not_scheduled" if s == "cancelled" else s) for d, s in actual.items()}
            wrong = {d: (actual[d], want) for d, want in p.expected.items() if actual[d] != want}
            assert not wrong, f"{p.subject} ({p.behaviour}, {p.tz}): {sorted(wrong.items())[:5]}"
            assert not set(got) - set(p.expected), f"{p.subject}: doses outside the study"
            for day in p.late_taken:
                assert (got[day].late_answer, got[day].state) == ("taken", "no_response")
            # The three figures, by hand from the script.
            days = list(p.expected.values())
            scheduled = sum(s != "not_scheduled" for s in days)
            taken = days.count("taken") + days.count("late")
            answered = taken + days.count("skipped") + days.count("missed")
            patient = await session.get(Patient, p.patient_id)
            assert patient is not None
            result = await adherence.patient_adherence(
                session, protocol, patient, now=now, end=p.baseline + timedelta(days=weeks * 7))
            assert result.counts.scheduled == scheduled
            assert result.counts.worst_case == pytest.approx(taken / scheduled)
            assert result.counts.confirmed_adherence == pytest.approx(
                (taken + len(p.late_taken)) / scheduled)
            assert result.counts.response_rate == pytest.approx(answered / scheduled)
            if p.behaviour in ("weekdays", "stops_w10"):
                assert "missing_run" in result.flags.names
            if p.behaviour in ("always", "paused", "withdrawn", "stop"):
                assert not result.flags.any


async def run_trial(db: Database, protocol: Protocol, count: int, weeks: int) -> None:
    people = await simulate(db, protocol, count, weeks)
    end = max(p.instant(weeks * 7, 0) for p in people) + timedelta(days=2)
    await check(db, protocol, people, end, weeks)
    async with db.read() as session:
        reminders = (await session.execute(select(OutboundMessage, DoseRecord).join(
            DoseRecord, DoseRecord.id == OutboundMessage.dose_id).where(
            OutboundMessage.dedupe_key.like("dose:reminder:%")))).all()
    assert reminders
    assert all(m.due_at == d.due_at for m, d in reminders)  # at the local dose time, never before



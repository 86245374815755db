"""Daily doses planned and moved on: each patient's dose rows created a day ahead, then each dose
reminded, followed up, snooze-reminded and closed at its cut-off (every change audited, as the
planner). The patient's answers are `study.dose_answers`; adherence is `study.adherence`.

Planning is proportional to what is due: a patient is looked at when `plan_next_at` comes (a day
before their next dose), a dose when its `next_action_at` comes. The unique (patient, local date)
key and the outbox keys make a second pass, or a second worker, plan nothing twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any, cast

from sqlalchemy import ColumnElement, Table, and_, bindparam, exists, or_, select, union
from sqlalchemy.ext.asyncio import AsyncSession

from storage import outbox
from storage.batch import loaded_rows, update_by_id
from storage.db import insert_new
from storage.models import DoseRecord, Patient, Visit
from storage.types import UTCDateTime
from study import contacts
from study.dose_answers import dose_choices
from study.dose_records import (
    DOSE_DAYS,
    DOSE_FIELDS,
    DOSE_TABLE,
    PLANNER,
    DoseWrites,
    audit_later,
    to_dose,
)
from study.outgoing import Recipient, Reply, plan, queue_many
from study.recipients import Route, patient_route, receives_routine_sql
from trial import delivery, schedule
from trial import dose as rules
from trial import visits as visit_rules
from trial.dose import Dose, DoseState
from trial.protocol import Protocol

# A day's dose row exists from a day before it is due: staff see it, an early "taken" finds it.
PLAN_AHEAD = timedelta(days=1)
BATCH = 500


# --- planning rows ----------------------------------------------------------------------------

def _patients_due(now: datetime | ColumnElement[datetime],
                  ) -> tuple[ColumnElement[bool], ColumnElement[bool]]:
    """Active patients whose planning instant has come; active patients never planned.

    Two conditions, each one range of ix_patients_planning (an OR of them is not: SQLite would
    walk every active patient)."""
    active = receives_routine_sql()
    return (and_(*active, Patient.plan_next_at <= now),
            and_(*active, Patient.plan_next_at.is_(None), Patient.planned_through.is_(None)))


def _due_patients() -> Any:
    planning, never_planned = _patients_due(bindparam("plan_now", type_=UTCDateTime()))
    due = union(select(Patient.id).where(planning), select(Patient.id).where(never_planned))
    return (select(*(_PATIENT_TABLE.c[name] for name in _PLANNING_COLUMNS))
            .where(Patient.id.in_(select(due.subquery().c.id)))
            .order_by(Patient.id).limit(bindparam("plan_limit"))
            .with_for_update(skip_locked=True))


_PATIENT_TABLE = cast(Table, Patient.__table__)
# What planning reads of a patient (and writes: the two watermark columns).
_PLANNING_COLUMNS = ("id", "subject_id", "baseline", "dose_time", "tz", "status", "opted_out",
                     "planned_through", "plan_next_at")
_WATERMARKS = ("planned_through", "plan_next_at")
# Built once: it runs on every pass that has a dose or a patient due (and most find nobody).
_DUE_PATIENTS = _due_patients()


def due_condition(now: datetime | ColumnElement[datetime]) -> ColumnElement[bool]:
    """SQL: a patient's planning or a dose's next action is due (index look-ups)."""
    planning, never_planned = _patients_due(now)
    return or_(exists().where(DoseRecord.next_action_at <= now), exists().where(planning),
               exists().where(never_planned))


async def plan_patients(session: AsyncSession, protocol: Protocol, now: datetime, *,
                        limit: int = BATCH) -> tuple[int, bool]:
    """Create the dose rows that are due to exist; return (rows created, maybe more to do)."""
    result = (await session.execute(_DUE_PATIENTS, {"plan_now": now, "plan_limit": limit})
              ).all()
    if not result:
        return 0, False
    planned: list[tuple[Patient, schedule.DoseTimes]] = []
    moved: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for (patient,) in loaded_rows(result, _PLANNING_COLUMNS):
        before = tuple(getattr(patient, name) for name in _WATERMARKS)
        planned += plan_patient(protocol, patient, now)
        names = tuple(name for name, old in zip(_WATERMARKS, before, strict=True)
                      if getattr(patient, name) != old)
        if names:
            moved.setdefault(names, []).append(
                {"b_id": patient.id, **{f"b_{name}": getattr(patient, name) for name in names}})
    # The watermarks are bookkeeping (not audited): one UPDATE per set of moved columns.
    for names, values in moved.items():
        await session.execute(update_by_id(_PATIENT_TABLE, names), values)
    created = await _create_doses(session, planned, now)
    return created, len(result) == limit


def plan_patient(protocol: Protocol, patient: Patient,
                 now: datetime) -> list[tuple[Patient, schedule.DoseTimes]]:
    """The days whose dose row is due to exist (up to a day ahead); moves the watermark."""
    end = schedule.end_of_doses(protocol, patient.baseline)
    day = patient.baseline
    if patient.planned_through is not None:
        day = max(day, patient.planned_through + timedelta(days=1))
    # Days gone by while the patient was paused (or the system down) are not scheduled.
    day = max(day, schedule.local_date(now, patient.tz) - timedelta(days=1))
    due: list[tuple[Patient, schedule.DoseTimes]] = []
    while day < end:
        times = schedule.dose_times(protocol.reminders, day, patient.dose_time, patient.tz)
        if times.due_at - PLAN_AHEAD > now:
            break
        # A day first planned after its follow-up time could not be reminded in time.
        if now < times.follow_up_at and delivery.receives_routine(patient.status,
                                                                  patient.opted_out):
            due.append((patient, times))
        patient.planned_through = day
        day += timedelta(days=1)
    if day < end:
        following = schedule.dose_times(protocol.reminders, day, patient.dose_time, patient.tz)
        patient.plan_next_at = following.due_at - PLAN_AHEAD
    else:
        patient.plan_next_at = None
        if patient.planned_through is None:
            patient.planned_through = end - timedelta(days=1)
    return due


# The dose rows' INSERT ... ON CONFLICT DO NOTHING RETURNING, built once per dialect.
_NEW_DOSES: dict[str, Any] = {}


async def _create_doses(session: AsyncSession, planned: Sequence[tuple[Patient,
                        schedule.DoseTimes]], now: datetime) -> int:
    """Insert the planned rows in one statement; an existing (patient, date) row is kept."""
    if not planned:
        return 0
    DOSE_DAYS.forget(session)
    values = []
    for patient, times in planned:
        dose = Dose(due_at=times.due_at, follow_up_at=times.follow_up_at,
                    cutoff_at=times.cutoff_at)
        row: dict[str, Any] = {name: getattr(dose, name) for name in DOSE_FIELDS}
        row.update(state=dose.state.value, patient_id=patient.id, local_date=times.local_date,
                   next_action_at=dose.next_action_at())
        values.append(row)
    statement = _NEW_DOSES.get(session.get_bind().dialect.name)
    if statement is None:
        table = DOSE_TABLE
        statement = _NEW_DOSES[session.get_bind().dialect.name] = (
            insert_new(session, table, unique=["patient_id", "local_date"])
            .returning(table.c.id, table.c.patient_id, table.c.local_date, table.c.due_at))
    subjects = {patient.id: patient.subject_id for patient, _ in planned}
    created = (await session.execute(statement, values)).all()
    for dose_id, patient_id, day, due_at in created:
        audit_later(session, at=now, actor=PLANNER, action="create", entity_id=str(dose_id),
                    new=f"patient={subjects[patient_id]}, local_date={day.isoformat()}, "
                        f"due_at={due_at.isoformat()}, state=scheduled")
    return len(created)


# --- moving doses on --------------------------------------------------------------------------

_DOSE_COLUMNS = tuple(c.key for c in DOSE_TABLE.columns)
# What moving a dose on reads of its patient (route, language, phase).
_ROUTE_COLUMNS = ("id", "subject_id", "status", "opted_out", "language", "baseline",
                  "telegram_id", "telegram_reachable", "phone", "sms_reachable")
# Built once: it runs on every pass with a dose due.
_DUE_DOSES = (
    select(*DOSE_TABLE.columns, *(_PATIENT_TABLE.c[name] for name in _ROUTE_COLUMNS))
    .join_from(DOSE_TABLE, _PATIENT_TABLE, _PATIENT_TABLE.c.id == DOSE_TABLE.c.patient_id)
    .where(DOSE_TABLE.c.next_action_at <= bindparam("advance_now", type_=UTCDateTime()))
    .order_by(DOSE_TABLE.c.next_action_at, DOSE_TABLE.c.id)
    .limit(bindparam("advance_limit"))
    .with_for_update(skip_locked=True, of=DOSE_TABLE))


async def advance_doses(session: AsyncSession, protocol: Protocol, now: datetime, *,
                        limit: int = BATCH) -> tuple[int, bool]:
    """Send due reminders, follow-ups and snooze reminders; close doses at their cut-off."""
    result = (await session.execute(_DUE_DOSES, {"advance_now": now, "advance_limit": limit})
              ).all()
    rows = loaded_rows(result, _DOSE_COLUMNS, _ROUTE_COLUMNS)
    # Their other channels' addresses (WeChat), one statement for the batch.
    await contacts.attach(session, [p for _, p in rows])
    # A reminder (first or after a snooze) reads the hold as the visit stands now: a visit
    # recorded done, or moved to another day, since the first reminder holds nothing more.
    holds = await _visit_holds(session, protocol, [
        (p.id, d.local_date) for d, p in rows
        if d.state == DoseState.SCHEDULED.value or d.snoozed_until is not None])
    changed = 0
    outgoing: list[outbox.Planned] = []
    writes = DoseWrites(session)
    with session.no_autoflush:  # one flush at commit, not one per statement
        for row, patient in rows:
            changed += advance_dose(writes, protocol, row, patient, now, outgoing,
                                    hold=holds.get((patient.id, row.local_date)))
        await writes.write()
        await queue_many(session, outgoing, now=now, protocol=protocol)
    return changed, len(rows) == limit


async def _visit_holds(session: AsyncSession, protocol: Protocol,
                       keys: Sequence[tuple[int, date]]) -> dict[tuple[int, date], str]:
    """Visit days on which the home dose is held until after the blood test
    (`trial.visits.holds_dose`: never at W0, only a dose due before the visits' usual time,
    never once the visit is recorded done), on the day the visit is scheduled (or moved) to."""
    if not keys or not any(v.hold_dose for v in protocol.visits.table):
        return {}
    patient_ids = sorted({k[0] for k in keys})
    days = sorted({k[1] for k in keys})
    visits = (await session.execute(
        select(Visit.patient_id, Visit.scheduled_date, Visit.name, Patient.dose_time)
        .join(Patient, Patient.id == Visit.patient_id).where(
            Visit.patient_id.in_(patient_ids), Visit.scheduled_date.in_(days),
            Visit.status == "planned"))).all()
    wanted = set(keys)
    holds: dict[tuple[int, date], str] = {}
    for patient_id, day, name, dose_time in visits:
        if (patient_id, day) in wanted and visit_rules.holds_dose(
                protocol.visits.by_name(name), protocol.visits, dose_time):
            holds[(patient_id, day)] = name
    return holds


def advance_dose(writes: DoseWrites, protocol: Protocol, row: DoseRecord, patient: Patient,
                 now: datetime, outgoing: list[outbox.Planned], *,
                 hold: str | None = None) -> int:
    """Do what is due for one dose as of `now` (changes go to `writes`, messages to
    `outgoing`); 1 if it changed."""
    dose = to_dose(row)
    if now >= dose.cutoff_at:
        return int(writes.store(row, rules.close(dose, now), now=now, actor=PLANNER,
                         reason="cut-off without an answer"))
    active = delivery.receives_routine(patient.status, patient.opted_out)
    route = patient_route(patient) if active else None
    if dose.state is DoseState.SCHEDULED:
        if not active:
            return int(writes.store(row, rules.cancel(dose, now), now=now, actor=PLANNER,
                             reason=f"patient {patient.status}"
                                    f"{' and opted out' if patient.opted_out else ''}"))
        if route is not None and now < dose.follow_up_at:
            message_id = "dose.reminder_hold_for_visit" if hold else "dose.reminder"
            outgoing.append(_message(protocol, patient, row, route, message_id, "reminder",
                                     now=now, due_at=dose.due_at))
            return int(writes.store(row, rules.remind(dose, now), now=now, actor=PLANNER,
                             hold_for_visit=hold))
        writes.wait(row, dose.cutoff_at)  # no channel, or too late to remind: wait
        return 0
    if dose.followed_up_at is None and now >= dose.follow_up_at:
        if route is None:
            writes.wait(row, dose.cutoff_at)  # nobody to follow up now
            return 0
        outgoing.append(_message(protocol, patient, row, route, "dose.follow_up", "followup",
                                 now=now, due_at=dose.follow_up_at))
        return int(writes.store(row, rules.follow_up(dose, now), now=now, actor=PLANNER))
    if dose.snoozed_until is not None and now >= dose.snoozed_until:
        if route is not None:
            message_id = "dose.reminder_hold_for_visit" if hold else "dose.reminder"
            outgoing.append(_message(protocol, patient, row, route, message_id,
                                     f"snooze:{row.id}:{dose.snoozes}",
                                     now=now, due_at=dose.snoozed_until))
        return int(writes.store(row, rules.snooze_reminded(dose, now), now=now,
                         actor=PLANNER))
    writes.wait(row, dose.next_action_at())
    return 0


def reminder_params(protocol: Protocol, patient: Patient, day: date) -> dict[str, object]:
    """The protocol's wording for the day's phase (label, capsules), in the patient's language."""
    phase = schedule.phase_of(protocol, patient.baseline, day)
    label = protocol.dose.label[phase.dose_label].get(patient.language)
    return {"label": label, "capsules": protocol.dose.capsules}


def _message(protocol: Protocol, patient: Patient, row: DoseRecord, route: Route,
             message_id: str, kind: str, *, now: datetime, due_at: datetime) -> outbox.Planned:
    """The outbox row of one dose message (`study.outgoing.plan`), in the patient's language,
    with the dose's buttons."""
    recipient = Recipient(route.channel, route.address, patient.language, patient_id=patient.id)
    reply = Reply(message_id, reminder_params(protocol, patient, row.local_date),
                  tuple(dose_choices(row.id, recipient.reads)))
    key = f"dose:{kind}" if kind.startswith("snooze:") else f"dose:{kind}:{row.id}"
    return plan(recipient, reply, key=key, now=now, due_at=due_at, dose_id=row.id)

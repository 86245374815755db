"""Daily doses: planning each patient's dose rows, moving them through reminders, follow-ups and
cut-offs, the patient's answers, and the adherence report. Every dose change is audited.

Planning is proportional to what is due: a patient is looked at when `plan_next_at` comes (a day
before their next dose), a dose when its `next_action_at` comes. The unique (patient, local date)
key and the outbox keys make a second pass, or a second worker, plan nothing twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import date, datetime, timedelta
from functools import cache
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Table,
    and_,
    bindparam,
    event,
    exists,
    inspect,
    or_,
    select,
    union,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import flag_modified
from sqlalchemy.orm.util import identity_key

from messages import catalogue
from messages.channel import Choice
from storage import audit, outbox
from storage.audit import Actor
from storage.db import insert_new
from storage.models import DoseRecord, Patient, Visit
from storage.types import UTCDateTime
from study import contacts
from study.outgoing import queue_many
from study.recipients import Route, patient_route, receives_routine_sql
from study.replies import Reply
from trial import delivery, schedule
from trial import dose as rules
from trial import visits as visit_rules
from trial.adherence import Counts, Flags, days_between, summarize
from trial.dose import Answer, Dose, DoseState
from trial.protocol import Protocol

PLANNER = Actor.system("planner")
# A day's dose row exists from a day before it is due: staff see it, an early "taken" finds it.
PLAN_AHEAD = timedelta(days=1)
# An answer this long before today's dose time counts for today's dose (taken early).
EARLY_ANSWER = timedelta(hours=2)
# How far back an answer without a dose id looks for the dose it is about.
ANSWER_LOOKBACK = timedelta(hours=36)
BATCH = 500
DOSE_FIELDS = tuple(f.name for f in fields(Dose))


# --- rows <-> the pure dose -------------------------------------------------------------------

def to_dose(row: DoseRecord) -> Dose:
    """The pure dose of a row."""
    values: dict[str, Any] = {name: _loaded(row, name) for name in DOSE_FIELDS}
    values["state"] = DoseState(values["state"])
    return Dose(**values)


def _loaded(row: DoseRecord, name: str) -> Any:
    """A column's value as loaded (a plain read: this runs for every field of every change)."""
    loaded = row.__dict__
    return loaded[name] if name in loaded else getattr(row, name)


def _changes(row: DoseRecord, dose: Dose, extra: dict[str, Any]) -> dict[str, Any]:
    """The row's columns whose value the new dose (and `extra`) changes, with the new values;
    `next_action_at` among them when it moves."""
    changes: dict[str, Any] = {}
    for name in DOSE_FIELDS:
        new = getattr(dose, name)
        if name == "state":
            new = new.value
        if _loaded(row, name) != new:
            changes[name] = new
    for name, new in extra.items():
        if _loaded(row, name) != new:
            changes[name] = new
    following = dose.next_action_at()
    if _loaded(row, "next_action_at") != following:
        changes["next_action_at"] = following
    return changes


def _audit_changes(session: AsyncSession, row: DoseRecord, changes: dict[str, Any], *,
                   now: datetime, actor: Actor, reason: str | None) -> bool:
    """Audit every changed field (`next_action_at` is bookkeeping: not audited); True if any."""
    audited = False
    for name, new in changes.items():
        if name != "next_action_at":
            _audit(session, at=now, actor=actor, action="update", entity_id=str(row.id),
                   field=name, old=_loaded(row, name), new=new, reason=reason)
            audited = True
    return audited


def store(session: AsyncSession, row: DoseRecord, dose: Dose, *, now: datetime, actor: Actor,
          reason: str | None = None, **extra: Any) -> bool:
    """Write a dose's new state to its row (at the next flush), auditing every changed field;
    True if an audited field changed."""
    changes = _changes(row, dose, extra)
    if not changes:
        return False
    session.info.pop(_DAYS, None)
    audited = _audit_changes(session, row, changes, now=now, actor=actor, reason=reason)
    for name, new in changes.items():
        setattr(row, name, new)
    # The same column list for every answered dose, so a session's answers are written with one
    # executemany (the ORM starts a new statement whenever the columns differ from the last).
    for name in _ANSWER_COLUMNS:
        flag_modified(row, name)
    return audited


# Every column an answer (or the cut-off closing before it) may change.
_ANSWER_COLUMNS = ("state", "answered_at", "closed_at", "snoozes", "snoozed_until",
                   "skip_reason", "late_answer", "late_answer_at", "next_action_at")


class Loaded:
    """One row's columns as read with a Core statement: a plain object with the mapped class's
    attribute names (the per-instant planning reads hundreds of rows; ORM objects, their
    identity map and change tracking cost several times the query)."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.__dict__.update(values)


def _loaded_rows(rows: Sequence[Any], *parts: Sequence[str]) -> list[tuple[Any, ...]]:
    """Split each result row into one `Loaded` per part (its column names, in order)."""
    spans, start = [], 0
    for names in parts:
        spans.append((start, start + len(names), names))
        start += len(names)
    return [tuple(Loaded(dict(zip(names, row[low:high], strict=True)))
                  for low, high, names in spans) for row in rows]


class DoseWrites:
    """The dose rows one planning batch changes: audited as `store` audits, written with one
    UPDATE statement per set of changed columns (a batch's doses mostly change alike: all
    reminded, or all closed), not one by one as the ORM would. The rows are `Loaded` rows
    (Core reads), not ORM objects: the session tracks nothing of them."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.rows: dict[int, tuple[DoseRecord, set[str]]] = {}

    def store(self, row: DoseRecord, dose: Dose, *, now: datetime, actor: Actor,
              reason: str | None = None, **extra: Any) -> bool:
        """`store` for the batch; True if an audited field changed."""
        changes = _changes(row, dose, extra)
        audited = _audit_changes(self.session, row, changes, now=now, actor=actor,
                                 reason=reason)
        self._put(row, changes)
        return audited

    def wait(self, row: DoseRecord, until: datetime | None) -> None:
        """Look at the dose again at `until` (bookkeeping: not audited)."""
        if _loaded(row, "next_action_at") != until:
            self._put(row, {"next_action_at": until})

    def _put(self, row: DoseRecord, changes: dict[str, Any]) -> None:
        if not changes:
            return
        # The loaded row takes the new values (they are written by `write`).
        row.__dict__.update(changes)
        _, columns = self.rows.setdefault(row.id, (row, set()))
        columns.update(changes)

    async def write(self) -> int:
        """Write every changed row (one statement per set of changed columns); how many rows."""
        if not self.rows:
            return 0
        self.session.info.pop(_DAYS, None)
        table = cast(Table, DoseRecord.__table__)
        groups: dict[tuple[str, ...], list[DoseRecord]] = {}
        for row, changed in self.rows.values():
            groups.setdefault(tuple(sorted(changed)), []).append(row)
        for names, rows in groups.items():
            await self.session.execute(
                _update_by_id(table, names),
                [{"b_id": row.id, **{f"b_{name}": _loaded(row, name) for name in names}}
                 for row in rows])
        return len(self.rows)


@cache
def _update_by_id(table: Table, names: tuple[str, ...]) -> Any:
    """UPDATE of these columns by id (executemany parameters `b_id`, `b_<name>`), built once
    per set of columns: a new statement object would be compiled-cache-keyed every time."""
    return (update(table).where(table.c.id == bindparam("b_id"))
            .values({name: bindparam(f"b_{name}") for name in names}))


# Dose changes are audited as `storage.audit.record` would, but deferred: a day's planning
# writes all its entries with one statement at the session's flush or commit.

def _audit(session: AsyncSession, *, at: datetime, actor: Actor, action: str, entity_id: str,
           field: str | None = None, old: Any = None, new: Any = None,
           reason: str | None = None) -> None:
    audit.record_later(session, audit.Entry(at, actor, action, DoseRecord.__tablename__,
                                            entity_id, field, old, new, reason))


async def flush_audit(session: AsyncSession) -> None:
    """Write the dose audit entries this session holds now (they are written at commit anyway)."""
    await audit.write_deferred(session)


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
    for (patient,) in _loaded_rows(result, _PLANNING_COLUMNS):
        before = tuple(getattr(patient, name) for name in _WATERMARKS)
        planned += plan_patient(protocol, patient, now)
        names = tuple(name for name, old in zip(_WATERMARKS, before, strict=True)
                      if getattr(patient, name) != old)
        if names:
            moved.setdefault(names, []).append(
                {"b_id": patient.id, **{f"b_{name}": getattr(patient, name) for name in names}})
    # The watermarks are bookkeeping (not audited): one UPDATE per set of moved columns.
    for names, values in moved.items():
        await session.execute(_update_by_id(_PATIENT_TABLE, names), values)
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
    session.info.pop(_DAYS, None)
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
        table = _DOSE_TABLE
        statement = _NEW_DOSES[session.get_bind().dialect.name] = (
            insert_new(session, table, unique=["patient_id", "local_date"])
            .returning(table.c.id, table.c.patient_id, table.c.local_date, table.c.due_at))
    subjects = {patient.id: patient.subject_id for patient, _ in planned}
    created = (await session.execute(statement, values)).all()
    for dose_id, patient_id, day, due_at in created:
        _audit(session, at=now, actor=PLANNER, action="create", entity_id=str(dose_id),
               new=f"patient={subjects[patient_id]}, local_date={day.isoformat()}, "
                   f"due_at={due_at.isoformat()}, state=scheduled")
    return len(created)


# --- moving doses on --------------------------------------------------------------------------

_DOSE_TABLE = cast(Table, DoseRecord.__table__)
_DOSE_COLUMNS = tuple(c.key for c in _DOSE_TABLE.columns)
# What moving a dose on reads of its patient (route, language, phase).
_ROUTE_COLUMNS = ("id", "subject_id", "status", "opted_out", "language", "baseline",
                  "telegram_id", "telegram_reachable", "phone", "sms_reachable")
# Built once: it runs on every pass with a dose due.
_DUE_DOSES = (
    select(*_DOSE_TABLE.columns, *(_PATIENT_TABLE.c[name] for name in _ROUTE_COLUMNS))
    .join_from(_DOSE_TABLE, _PATIENT_TABLE, _PATIENT_TABLE.c.id == _DOSE_TABLE.c.patient_id)
    .where(_DOSE_TABLE.c.next_action_at <= bindparam("advance_now", type_=UTCDateTime()))
    .order_by(_DOSE_TABLE.c.next_action_at, _DOSE_TABLE.c.id)
    .limit(bindparam("advance_limit"))
    .with_for_update(skip_locked=True, of=_DOSE_TABLE))


async def advance_doses(session: AsyncSession, protocol: Protocol, now: datetime, *,
                        limit: int = BATCH) -> tuple[int, bool]:
    """Send due reminders, follow-ups and snooze reminders; close doses at their cut-off."""
    result = (await session.execute(_DUE_DOSES, {"advance_now": now, "advance_limit": limit})
              ).all()
    rows = _loaded_rows(result, _DOSE_COLUMNS, _ROUTE_COLUMNS)
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
        await queue_many(session, outgoing, now=now)
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
                                     due_at=dose.due_at))
            return int(writes.store(row, rules.remind(dose, now), now=now, actor=PLANNER,
                             hold_for_visit=hold))
        writes.wait(row, dose.cutoff_at)  # no channel, or too late to remind: wait
        return 0
    if dose.followed_up_at is None and now >= dose.follow_up_at:
        if route is None:
            writes.wait(row, dose.cutoff_at)  # nobody to follow up now
            return 0
        outgoing.append(_message(protocol, patient, row, route, "dose.follow_up", "followup",
                                 due_at=dose.follow_up_at))
        return int(writes.store(row, rules.follow_up(dose, now), now=now, actor=PLANNER))
    if dose.snoozed_until is not None and now >= dose.snoozed_until:
        if route is not None:
            message_id = "dose.reminder_hold_for_visit" if hold else "dose.reminder"
            outgoing.append(_message(protocol, patient, row, route, message_id,
                                     f"snooze:{row.id}:{dose.snoozes}",
                                     due_at=dose.snoozed_until))
        return int(writes.store(row, rules.snooze_reminded(dose, now), now=now,
                         actor=PLANNER))
    writes.wait(row, dose.next_action_at())
    return 0


def dose_choices(dose_id: int, language: str) -> list[Choice]:
    """The reminder's answers: Taken, Not taken, Remind me later, Report. By SMS the first
    three are numbers (messages.sms.SMS_CHOICES["dose"]: 1 taken, 2 not taken, answered with
    the missed-dose rule, 3 later); Report is a Telegram button (by SMS a patient just writes)."""
    taken, not_taken, snooze, report = _button_labels(language)
    return [Choice(taken, f"dose:taken:{dose_id}", "1"),
            Choice(not_taken, f"dose:missed:{dose_id}", "2"),
            Choice(snooze, f"dose:snooze:{dose_id}", "3"),
            Choice(report, "report:start", "")]


@cache
def _button_labels(language: str) -> tuple[str, str, str, str]:
    # The catalogue's texts are loaded once per process, so the labels are too.
    taken, not_taken, snooze, report = (catalogue.render(f"dose.button_{name}", language)
                                        for name in ("taken", "not_taken", "snooze", "report"))
    return taken, not_taken, snooze, report


def reminder_params(protocol: Protocol, patient: Patient, day: date) -> dict[str, object]:
    """The protocol's wording for the day's phase (label, capsules), in the patient's language."""
    phase = schedule.phase_of(protocol, patient.baseline, day)
    label = protocol.dose.label[phase.dose_label].get(patient.language)
    return {"label": label, "capsules": protocol.dose.capsules}


def _message(protocol: Protocol, patient: Patient, row: DoseRecord, route: Route,
             message_id: str, kind: str, *, due_at: datetime) -> outbox.Planned:
    """An outbox row for one dose message, in the patient's language, with the dose's buttons."""
    template = catalogue.template(message_id, patient.language)
    body = template.render(**reminder_params(protocol, patient, row.local_date))
    choices = [{"label": c.label, "action": c.action, "sms_word": c.sms_word}
               for c in dose_choices(row.id, patient.language)]
    key = f"dose:{kind}" if kind.startswith("snooze:") else f"dose:{kind}:{row.id}"
    return outbox.Planned(key, route.channel, route.address, message_id, template.version,
                          patient.language, body, due_at, outbox.ROUTINE, choices,
                          patient_id=patient.id, dose_id=row.id)


# --- the patient's answers --------------------------------------------------------------------

async def find_answerable(session: AsyncSession, patient: Patient, now: datetime,
                          dose_id: int | None = None) -> DoseRecord | None:
    """The dose an answer is about: the given one (if it is the patient's), else the open dose
    already due, else today's dose answered early, else the latest recent one."""
    if dose_id is not None:
        # PostgreSQL: lock the row against a concurrent answer. SQLite's write transaction is
        # already exclusive (BEGIN IMMEDIATE), so a row this session holds is used as it is.
        locking = session.get_bind().dialect.name == "postgresql"
        row = None if locking else _held(session, dose_id)
        if row is None:
            row = await session.get(DoseRecord, dose_id, with_for_update=locking or None)
        # A button of a dose not yet due (a stale or forged press) must not record tomorrow's
        # dose today: the same early-answer window as a typed answer.
        if row is None or row.patient_id != patient.id or row.due_at > now + EARLY_ANSWER:
            return None
        return row
    rows = (await session.execute(
        select(DoseRecord).where(DoseRecord.patient_id == patient.id,
                                 DoseRecord.due_at <= now + EARLY_ANSWER,
                                 DoseRecord.due_at > now - ANSWER_LOOKBACK,
                                 DoseRecord.state != DoseState.CANCELLED.value)
        .with_for_update())).scalars().all()

    def rank(row: DoseRecord) -> tuple[bool, bool, datetime]:
        is_open = DoseState(row.state).is_open and row.cutoff_at > now
        return is_open and row.due_at <= now, is_open, row.due_at

    return max(rows, key=rank, default=None)


def latest_make_up(protocol: Protocol, patient: Patient) -> str:
    """The latest local time a forgotten dose may still be taken: the same day and at least
    the protocol's hours before the next dose (the patient's dose time tomorrow), so the
    patient is told a time, not asked to compute one."""
    hours = protocol.dose.missed_dose_take_if_hours_before_next
    hour, _, minute = patient.dose_time.partition(":")
    minutes = int(hour) * 60 + int(minute or 0) + (24 - hours) * 60
    minutes = min(minutes, 24 * 60 - 1)  # the same day only
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _held(session: AsyncSession, dose_id: int) -> DoseRecord | None:
    """The dose row this session holds already, as `session.get` would return it (no statement
    and no trip through the async bridge: a batch of answers finds its rows loaded)."""
    row = session.identity_map.get(identity_key(DoseRecord, dose_id))
    if row is None or inspect(row).expired:
        return None
    return row


ACKS = {DoseState.TAKEN: "dose.taken_ack", DoseState.LATE: "dose.taken_ack",
        DoseState.SKIPPED: "dose.skipped_ack"}


async def answer_dose(session: AsyncSession, protocol: Protocol, patient: Patient, answer: str,
                      *, now: datetime, dose_id: int | None = None,
                      reason: str | None = None) -> Reply:
    """Record a patient's answer (taken, skip, snooze, missed) and say what was recorded."""
    given = Answer(answer)
    row = await find_answerable(session, patient, now, dose_id)
    if row is None:
        return Reply("dose.no_open_dose")
    dose = to_dose(row)
    if dose.state.is_open and now >= dose.cutoff_at:
        # The planner has not closed it yet: close it as it would have, then hear the answer.
        dose = rules.close(dose, now)
        store(session, row, dose, now=now, actor=PLANNER, reason="cut-off without an answer")
    settings = protocol.reminders
    try:
        outcome = rules.answer(dose, given, now, snooze_minutes=settings.snooze_minutes,
                               max_snoozes=settings.max_snoozes, reason=reason)
    except rules.SnoozeLimitError:
        return Reply("dose.snooze_limit", {"max": settings.max_snoozes},
                     tuple(dose_choices(row.id, patient.language)[:2]))
    except rules.AlreadyAnsweredError:
        return Reply("dose.already_answered")
    except rules.DoseError:
        return Reply("dose.no_open_dose")
    store(session, row, outcome.dose, now=now, actor=Actor.patient(patient.subject_id),
          reason=reason if given is Answer.SKIP else None)
    new = outcome.dose
    if outcome.kind == "late_answer" or (outcome.kind == "duplicate" and new.late_answer):
        return Reply("dose.late_answer_ack")
    if new.state is DoseState.SNOOZED and given is Answer.SNOOZE:
        return Reply("dose.snoozed_ack", {"minutes": settings.snooze_minutes})
    if new.state is DoseState.MISSED:
        return Reply("dose.missed_rule", {"latest": latest_make_up(protocol, patient),
                                          "capsules": protocol.dose.capsules})
    return Reply(ACKS.get(new.state, "dose.already_answered"))


# --- adherence --------------------------------------------------------------------------------

@dataclass(frozen=True)
class PatientAdherence:
    """One patient's adherence over a window of local dates."""

    subject_id: str
    site_id: str
    start: date
    end: date  # exclusive
    counts: Counts
    flags: Flags

    def as_dict(self) -> dict[str, object]:
        """For JSON: counts, the three figures (fractions) and the flags."""
        return {"subject_id": self.subject_id, "site": self.site_id,
                "from": self.start.isoformat(), "to": self.end.isoformat(),
                **self.counts.as_dict(), "flags": list(self.flags.names)}


async def patient_adherence(session: AsyncSession, protocol: Protocol, patient: Patient, *,
                            now: datetime, start: date | None = None,
                            end: date | None = None) -> PatientAdherence:
    """A patient's adherence from baseline (or `start`) up to today (or `end`, exclusive)."""
    last = min(schedule.end_of_doses(protocol, patient.baseline),
               schedule.local_date(now, patient.tz) + timedelta(days=1))
    start = max(start or patient.baseline, patient.baseline)
    end = max(start, min(end or last, last))
    days = await _site_days(session, patient.site_id, start, end)
    records = days_between(days.get(patient.id, {}), start, end)
    summary = summarize(records)
    return PatientAdherence(patient.subject_id, patient.site_id, start, end, summary.counts,
                            summary.flags)


# Reports, digests and staff views ask for every patient of a site in turn: the site's days are
# read once per session (one query, not one per patient) and forgotten whenever a dose changes
# or the session flushes, commits or rolls back.
_DAYS = "dose_adherence_days"
_DAYS_SPAN = timedelta(days=28)
_DAYS_MARGIN = timedelta(days=7)


@dataclass(frozen=True)
class DoseDay:
    """What adherence reads of one dose."""

    state: str
    late_answer: str | None


async def _site_days(session: AsyncSession, site_id: str, start: date,
                     end: date) -> dict[int, dict[date, DoseDay]]:
    cache: dict[tuple[str, date, date], dict[int, dict[date, DoseDay]]] = session.info.get(
        _DAYS, {})
    for (site, low, high), cached in cache.items():
        if site == site_id and low <= start and end <= high:
            return cached
    # A little either side: the site's other patients (baselines days apart) then read from
    # the cache too. Extra days are harmless: callers take their own window's dates.
    low = min(start, end - _DAYS_SPAN) - _DAYS_MARGIN
    end += _DAYS_MARGIN
    rows = (await session.execute(
        select(DoseRecord.patient_id, DoseRecord.local_date, DoseRecord.state,
               DoseRecord.late_answer)
        .join(Patient, Patient.id == DoseRecord.patient_id)
        .where(Patient.site_id == site_id, DoseRecord.local_date >= low,
               DoseRecord.local_date < end))).all()
    days: dict[int, dict[date, DoseDay]] = {}
    for patient_id, day, state, late_answer in rows:
        days.setdefault(patient_id, {})[day] = DoseDay(state, late_answer)
    if _DAYS not in session.info:
        session.info[_DAYS] = cache
        sync = session.sync_session
        for name in ("after_flush", "after_commit", "after_rollback"):
            if not event.contains(sync, name, _forget_days):
                event.listen(sync, name, _forget_days)
    cache[(site_id, low, end)] = days
    return days


def _forget_days(session: Session, *_: Any) -> None:
    session.info.pop(_DAYS, None)


@dataclass(frozen=True)
class AdherenceReport:
    """Per patient and per site."""

    patients: list[PatientAdherence]
    sites: dict[str, Counts]

    def as_dict(self) -> dict[str, object]:
        flagged: dict[str, int] = {}
        for p in self.patients:
            flagged[p.site_id] = flagged.get(p.site_id, 0) + int(p.flags.any)
        return {"patients": [p.as_dict() for p in self.patients],
                "sites": [{"site": site, **counts.as_dict(), "flagged": flagged.get(site, 0)}
                          for site, counts in sorted(self.sites.items())]}


async def adherence_report(session: AsyncSession, protocol: Protocol, *, now: datetime,
                           site_id: str | None = None, start: date | None = None,
                           end: date | None = None) -> AdherenceReport:
    """Adherence of every patient (of one site), and each site's sums."""
    statement = select(Patient).order_by(Patient.site_id, Patient.subject_id)
    if site_id is not None:
        statement = statement.where(Patient.site_id == site_id)
    patients = (await session.execute(statement)).scalars().all()
    results = [await patient_adherence(session, protocol, p, now=now, start=start, end=end)
               for p in patients]
    sites: dict[str, Counts] = {}
    for result in results:
        sites.setdefault(result.site_id, Counts()).merge(result.counts)
    return AdherenceReport(results, sites)

"""The patient's answers to a daily dose (taken, not taken, skip, remind me later): the dose an
answer is about, recording it (audited, as the patient), and what is said back; the reminder's
answer buttons."""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import cache

from sqlalchemy import inspect, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.util import identity_key

from messages import catalogue
from storage.audit import Actor
from storage.models import DoseRecord, Patient
from study.dose_records import PLANNER, store, to_dose
from study.outgoing import Choice, Reply
from trial import dose as rules
from trial.dose import Answer, DoseState
from trial.protocol import Protocol

# An answer this long before today's dose time counts for today's dose (taken early).
EARLY_ANSWER = timedelta(hours=2)
# How far back an answer without a dose id looks for the dose it is about.
ANSWER_LOOKBACK = timedelta(hours=36)


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

"""The daily dose as a state machine: pure functions from a dose and an instant to a new dose.

scheduled -> reminded -> snoozed (at most max_snoozes times) -> taken | late | skipped | missed
| no_response, and cancelled for a planned day on which the patient was no longer active.

- late: taken after the follow-up was sent (or after reporting it missed the same day, following
  the missed-dose rule); missed: the patient says so; no_response: closed at the cut-off.
- An answer at or after the cut-off never reopens the day: it is kept as a late answer with its
  real time for staff to see, and the closed state stays.
- The same answer twice is one answer; a different answer after a closing one is refused
  (the first answer stands), except `taken` after `missed` (the patient took it after all).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum


class DoseState(StrEnum):
    SCHEDULED = "scheduled"
    REMINDED = "reminded"
    SNOOZED = "snoozed"
    TAKEN = "taken"
    LATE = "late"
    SKIPPED = "skipped"
    MISSED = "missed"
    NO_RESPONSE = "no_response"
    CANCELLED = "cancelled"

    @property
    def is_open(self) -> bool:
        """Still waiting for an answer or the cut-off."""
        return self in OPEN

    @property
    def is_answered(self) -> bool:
        """Closed by the patient's own answer before the cut-off."""
        return self in ANSWERED


OPEN = frozenset({DoseState.SCHEDULED, DoseState.REMINDED, DoseState.SNOOZED})
# The open states as stored (a query's `state IN (...)`).
OPEN_VALUES = tuple(sorted(state.value for state in OPEN))
ANSWERED = frozenset({DoseState.TAKEN, DoseState.LATE, DoseState.SKIPPED, DoseState.MISSED})


class Answer(StrEnum):
    TAKEN = "taken"
    SKIP = "skip"
    SNOOZE = "snooze"
    MISSED = "missed"


class DoseError(ValueError):
    """A transition the dose's state does not allow; the message says why."""


class SnoozeLimitError(DoseError):
    """The patient has already snoozed this dose as often as the protocol allows."""


class AlreadyAnsweredError(DoseError):
    """A different answer for a dose the patient has already answered."""

    def __init__(self, state: DoseState) -> None:
        super().__init__(f"the dose is already recorded as {state.value}")
        self.state = state


@dataclass(frozen=True)
class Dose:
    """A dose's state and times; mirrors the `doses` row."""

    due_at: datetime
    follow_up_at: datetime
    cutoff_at: datetime
    state: DoseState = DoseState.SCHEDULED
    reminded_at: datetime | None = None
    followed_up_at: datetime | None = None
    snoozes: int = 0
    snoozed_until: datetime | None = None
    answered_at: datetime | None = None
    closed_at: datetime | None = None
    skip_reason: str | None = None
    late_answer: str | None = None
    late_answer_at: datetime | None = None

    def next_action_at(self) -> datetime | None:
        """The next instant the planner must act on this dose (None once it is closed)."""
        if not self.state.is_open:
            return None
        if self.state is DoseState.SCHEDULED:
            return min(self.due_at, self.cutoff_at)
        moments = [self.cutoff_at]
        if self.followed_up_at is None:
            moments.append(self.follow_up_at)
        if self.snoozed_until is not None:
            moments.append(self.snoozed_until)
        return min(moments)


@dataclass(frozen=True)
class Outcome:
    """What an answer did: the new dose and which of the cases it was."""

    dose: Dose
    kind: str  # recorded|duplicate|late_answer


def remind(dose: Dose, now: datetime) -> Dose:
    """The reminder went out."""
    if dose.state is not DoseState.SCHEDULED:
        raise DoseError(f"only a scheduled dose is reminded, not a {dose.state.value} one")
    if now < dose.due_at:
        raise DoseError("a reminder never goes out before the dose time")
    if now >= dose.cutoff_at:
        raise DoseError("the dose is past its cut-off")
    return replace(dose, state=DoseState.REMINDED, reminded_at=now)


def follow_up(dose: Dose, now: datetime) -> Dose:
    """The follow-up went out; a snooze reminder due by now is superseded by it."""
    if dose.state not in (DoseState.REMINDED, DoseState.SNOOZED):
        raise DoseError(f"no follow-up for a {dose.state.value} dose")
    if dose.followed_up_at is not None:
        raise DoseError("the follow-up has already gone out")
    if now < dose.follow_up_at or now >= dose.cutoff_at:
        raise DoseError("the follow-up is not due")
    pending = dose.snoozed_until if dose.snoozed_until and dose.snoozed_until > now else None
    return replace(dose, followed_up_at=now, snoozed_until=pending)


def snooze_reminded(dose: Dose, now: datetime) -> Dose:
    """The reminder after a snooze went out."""
    if dose.state is not DoseState.SNOOZED or dose.snoozed_until is None:
        raise DoseError("no snooze reminder is pending")
    if now < dose.snoozed_until:
        raise DoseError("the snooze reminder is not due")
    return replace(dose, snoozed_until=None)


def close(dose: Dose, now: datetime) -> Dose:
    """Close an unanswered dose at its cut-off as no_response."""
    if not dose.state.is_open:
        raise DoseError(f"a {dose.state.value} dose is already closed")
    if now < dose.cutoff_at:
        raise DoseError("the cut-off has not come")
    return replace(dose, state=DoseState.NO_RESPONSE, closed_at=dose.cutoff_at,
                   snoozed_until=None)


def cancel(dose: Dose, now: datetime) -> Dose:
    """A planned day on which the patient is no longer active: not scheduled after all."""
    if dose.state is not DoseState.SCHEDULED:
        raise DoseError(f"only a scheduled dose is cancelled, not a {dose.state.value} one")
    return replace(dose, state=DoseState.CANCELLED, closed_at=now)


def answer(dose: Dose, given: Answer, now: datetime, *, snooze_minutes: int, max_snoozes: int,
           reason: str | None = None) -> Outcome:
    """Apply a patient's answer as of `now`; raise DoseError when the state does not allow it."""
    if dose.state is DoseState.CANCELLED:
        raise DoseError("this day has no scheduled dose")
    if now >= dose.cutoff_at:
        return _after_cutoff(dose, given, now)
    if given is Answer.SNOOZE:
        return Outcome(_snooze(dose, now, snooze_minutes, max_snoozes), "recorded")
    target = _closing_state(dose, given)
    if dose.state is target or (target is DoseState.TAKEN and dose.state is DoseState.LATE):
        return Outcome(dose, "duplicate")
    if not dose.state.is_open:
        if dose.state is DoseState.MISSED and given is Answer.TAKEN:
            return Outcome(replace(dose, state=DoseState.LATE, answered_at=now), "recorded")
        raise AlreadyAnsweredError(dose.state)
    closed = replace(dose, state=target, answered_at=now, closed_at=now, snoozed_until=None,
                     skip_reason=reason if target is DoseState.SKIPPED else None)
    return Outcome(closed, "recorded")


def _closing_state(dose: Dose, given: Answer) -> DoseState:
    if given is Answer.TAKEN:
        return DoseState.LATE if dose.followed_up_at is not None else DoseState.TAKEN
    if given is Answer.SKIP:
        return DoseState.SKIPPED
    return DoseState.MISSED


def _snooze(dose: Dose, now: datetime, minutes: int, max_snoozes: int) -> Dose:
    if dose.state is DoseState.SCHEDULED:
        raise DoseError("there is no reminder to snooze yet")
    if not dose.state.is_open:
        raise AlreadyAnsweredError(dose.state)
    if dose.snoozes >= max_snoozes:
        raise SnoozeLimitError(f"already snoozed {dose.snoozes} times (the most allowed)")
    return replace(dose, state=DoseState.SNOOZED, snoozes=dose.snoozes + 1,
                   snoozed_until=now + timedelta(minutes=minutes))


def _after_cutoff(dose: Dose, given: Answer, now: datetime) -> Outcome:
    if given is Answer.SNOOZE:
        raise DoseError("the dose is past its cut-off: nothing to snooze")
    if dose.state.is_open:
        dose = close(dose, now)
    if dose.state is not DoseState.NO_RESPONSE:
        # Answered in time already: a second word after the cut-off changes nothing.
        target = _closing_state(dose, given)
        if target is dose.state or (target is DoseState.TAKEN and dose.state is DoseState.LATE):
            return Outcome(dose, "duplicate")
        raise AlreadyAnsweredError(dose.state)
    if dose.late_answer is not None:
        return Outcome(dose, "duplicate")  # the first late answer is the one staff see
    return Outcome(replace(dose, late_answer=given.value, late_answer_at=now), "late_answer")

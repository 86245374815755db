"""The dose state machine (pure): transitions, late answers, idempotence, and a stateful
property test over random answers, duplicates, reorderings and clock moves."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from trial import dose as rules
from trial.dose import ANSWERED, Answer, Dose, DoseState

DUE = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)


def fresh() -> Dose:
    return Dose(due_at=DUE, follow_up_at=DUE + 60 * MIN, cutoff_at=DUE + 720 * MIN)


def answer(dose: Dose, given: str, at: timedelta, reason: str | None = None) -> rules.Outcome:
    return rules.answer(dose, Answer(given), DUE + at, snooze_minutes=30, max_snoozes=2,
                        reason=reason)


def test_reminded_then_taken_before_the_follow_up_is_taken() -> None:
    dose = rules.remind(fresh(), DUE)
    outcome = answer(dose, "taken", 10 * MIN)
    assert outcome.dose.state is DoseState.TAKEN
    assert outcome.dose.answered_at == DUE + 10 * MIN
    assert outcome.dose.next_action_at() is None


def test_taken_after_the_follow_up_is_late() -> None:
    dose = rules.follow_up(rules.remind(fresh(), DUE), DUE + 60 * MIN)
    assert answer(dose, "taken", 61 * MIN).dose.state is DoseState.LATE


def test_reminder_never_before_the_dose_time() -> None:
    with pytest.raises(rules.DoseError, match="before the dose time"):
        rules.remind(fresh(), DUE - MIN)


def test_skip_keeps_its_reason_and_missed_is_the_patients_word() -> None:
    dose = rules.remind(fresh(), DUE)
    skipped = answer(dose, "skip", MIN, reason="nausea").dose
    assert (skipped.state, skipped.skip_reason) == (DoseState.SKIPPED, "nausea")
    assert answer(dose, "missed", MIN).dose.state is DoseState.MISSED


def test_taken_twice_is_one_taken() -> None:
    first = answer(rules.remind(fresh(), DUE), "taken", MIN)
    second = answer(first.dose, "taken", 5 * MIN)
    assert second.kind == "duplicate"
    assert second.dose == first.dose


def test_a_different_answer_after_a_closing_one_is_refused() -> None:
    taken = answer(rules.remind(fresh(), DUE), "taken", MIN).dose
    with pytest.raises(rules.AlreadyAnsweredError):
        answer(taken, "skip", 2 * MIN)


def test_taken_after_reporting_missed_is_late() -> None:
    missed = answer(rules.remind(fresh(), DUE), "missed", MIN).dose
    assert answer(missed, "taken", 2 * MIN).dose.state is DoseState.LATE


def test_snooze_is_limited() -> None:
    dose = rules.remind(fresh(), DUE)
    dose = answer(dose, "snooze", MIN).dose
    assert (dose.state, dose.snoozes, dose.snoozed_until) == (DoseState.SNOOZED, 1,
                                                              DUE + 31 * MIN)
    dose = answer(dose, "snooze", 2 * MIN).dose
    with pytest.raises(rules.SnoozeLimitError):
        answer(dose, "snooze", 3 * MIN)


def test_snooze_before_any_reminder_is_refused() -> None:
    with pytest.raises(rules.DoseError, match="no reminder"):
        answer(fresh(), "snooze", 0 * MIN)


def test_follow_up_supersedes_a_snooze_reminder_due_at_the_same_time() -> None:
    dose = answer(rules.remind(fresh(), DUE), "snooze", 30 * MIN).dose  # until +60
    followed = rules.follow_up(dose, DUE + 60 * MIN)
    assert followed.snoozed_until is None
    assert followed.next_action_at() == DUE + 720 * MIN


def test_an_answer_after_the_cutoff_is_kept_but_does_not_reopen_the_day() -> None:
    closed = rules.close(rules.remind(fresh(), DUE), DUE + 720 * MIN)
    assert closed.state is DoseState.NO_RESPONSE
    late = answer(closed, "taken", 800 * MIN)
    assert late.kind == "late_answer"
    assert (late.dose.state, late.dose.late_answer, late.dose.late_answer_at) == (
        DoseState.NO_RESPONSE, "taken", DUE + 800 * MIN)
    again = answer(late.dose, "skip", 900 * MIN)  # the first late answer is the one kept
    assert again.dose == late.dose


def test_an_answer_after_the_cutoff_closes_an_open_dose_first() -> None:
    outcome = answer(rules.remind(fresh(), DUE), "taken", 721 * MIN)
    assert outcome.dose.state is DoseState.NO_RESPONSE
    assert outcome.dose.closed_at == DUE + 720 * MIN
    assert outcome.dose.late_answer == "taken"


def test_cancel_only_a_scheduled_dose() -> None:
    assert rules.cancel(fresh(), DUE).state is DoseState.CANCELLED
    with pytest.raises(rules.DoseError):
        rules.cancel(rules.remind(fresh(), DUE), DUE)
    with pytest.raises(rules.DoseError, match="no scheduled dose"):
        answer(rules.cancel(fresh(), DUE), "taken", MIN)


def test_next_action_follows_the_dose() -> None:
    dose = fresh()
    assert dose.next_action_at() == DUE
    dose = rules.remind(dose, DUE)
    assert dose.next_action_at() == DUE + 60 * MIN
    dose = answer(dose, "snooze", 10 * MIN).dose
    assert dose.next_action_at() == DUE + 40 * MIN
    dose = rules.snooze_reminded(dose, DUE + 40 * MIN)
    assert dose.next_action_at() == DUE + 60 * MIN


TERMINAL = ANSWERED | {DoseState.NO_RESPONSE, DoseState.CANCELLED}


class DoseLife(RuleBasedStateMachine):
    """Random answers (with duplicates), planner actions and clock moves on one dose."""

    def __init__(self) -> None:
        super().__init__()
        self.dose = fresh()
        self.now = DUE - 30 * MIN
        self.history: list[DoseState] = [self.dose.state]
        self.first_terminal: DoseState | None = None
        self.late: tuple[str | None, datetime | None] = (None, None)

    def _set(self, dose: Dose) -> None:
        self.dose = dose
        self.history.append(dose.state)

    @rule(minutes=st.integers(min_value=0, max_value=400))
    def clock_moves(self, minutes: int) -> None:
        self.now += minutes * MIN

    @rule(given=st.sampled_from(list(Answer)), repeat=st.integers(min_value=1, max_value=3))
    def patient_answers(self, given: Answer, repeat: int) -> None:
        for _ in range(repeat):  # duplicates
            try:
                outcome = rules.answer(self.dose, given, self.now, snooze_minutes=30,
                                       max_snoozes=2)
            except rules.DoseError:
                continue
            self._set(outcome.dose)

    @rule()
    def planner_acts(self) -> None:
        dose, now = self.dose, self.now
        try:
            if now >= dose.cutoff_at and dose.state.is_open:
                self._set(rules.close(dose, now))
            elif dose.state is DoseState.SCHEDULED and now >= dose.due_at:
                self._set(rules.remind(dose, now))
            elif dose.followed_up_at is None and now >= dose.follow_up_at:
                self._set(rules.follow_up(dose, now))
            elif dose.snoozed_until is not None and now >= dose.snoozed_until:
                self._set(rules.snooze_reminded(dose, now))
        except rules.DoseError:
            pass

    @precondition(lambda self: self.dose.state is DoseState.SCHEDULED)
    @rule()
    def patient_paused_before_the_dose(self) -> None:
        self._set(rules.cancel(self.dose, self.now))

    @invariant()
    def never_back_to_scheduled(self) -> None:
        seen_other = False
        for state in self.history:
            if state is not DoseState.SCHEDULED:
                seen_other = True
            assert not (seen_other and state is DoseState.SCHEDULED)

    @invariant()
    def one_terminal_state(self) -> None:
        state = self.dose.state
        if self.first_terminal is None and state in TERMINAL:
            self.first_terminal = state
        if self.first_terminal is not None:
            # Once closed, the only move is missed -> late (the patient took it after all).
            assert state is self.first_terminal or (
                self.first_terminal is DoseState.MISSED and state is DoseState.LATE)
            if state is DoseState.LATE:
                self.first_terminal = DoseState.LATE

    @invariant()
    def consistent_fields(self) -> None:
        dose = self.dose
        assert 0 <= dose.snoozes <= 2
        if dose.state in ANSWERED:
            assert dose.answered_at is not None
            assert dose.answered_at < dose.cutoff_at
        if dose.state is DoseState.NO_RESPONSE:
            assert dose.closed_at == dose.cutoff_at
            assert dose.answered_at is None
        if dose.late_answer is not None:
            assert dose.state is DoseState.NO_RESPONSE
            assert dose.late_answer_at is not None
            assert dose.late_answer_at >= dose.cutoff_at
            if self.late[0] is not None:
                assert (dose.late_answer, dose.late_answer_at) == self.late  # never replaced
            self.late = (dose.late_answer, dose.late_answer_at)
        if dose.state is DoseState.LATE and dose.followed_up_at is None:
            assert DoseState.MISSED in self.history
        if not dose.state.is_open:
            assert dose.next_action_at() is None
            assert dose.snoozed_until is None


DoseLife.TestCase.settings = settings(max_examples=150, stateful_step_count=30, deadline=None)
test_dose_life = DoseLife.TestCase


def test_replace_keeps_the_dataclass_frozen() -> None:
    with pytest.raises(AttributeError):
        fresh().state = DoseState.TAKEN  # type: ignore[misc]
    assert replace(fresh(), snoozes=1).snoozes == 1

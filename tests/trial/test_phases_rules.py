"""Study phases by local date from the bundled protocol (pure rules)."""

from __future__ import annotations

from datetime import date

from trial import phases, schedule
from trial.protocol import Protocol

BASELINE = date(2026, 2, 10)


def test_phase_by_date(protocol: Protocol) -> None:
    def name(day: date) -> str | None:
        phase = phases.phase_on(protocol, BASELINE, day)
        return phase.name if phase else None

    assert name(date(2026, 2, 9)) is None  # before baseline
    assert name(BASELINE) == "blinded"
    assert name(date(2026, 7, 27)) == "blinded"  # day 167, the last blinded day
    assert name(date(2026, 7, 28)) == "open_label"  # day 168 = week 24
    assert name(date(2027, 1, 11)) == "open_label"  # day 335, the last dosing day
    assert name(date(2027, 1, 12)) is None  # day 336 = week 48: the study has ended


def test_phase_changes_and_end_of_study(protocol: Protocol) -> None:
    changes = phases.phase_changes(protocol, BASELINE)
    assert [(c.phase.name, c.starts) for c in changes] == [("open_label", date(2026, 7, 28))]
    assert phases.end_of_study(protocol, BASELINE) == date(2027, 1, 12)
    assert phases.thank_you_day(protocol, BASELINE) == date(2027, 1, 13)
    assert schedule.in_dosing_period(protocol, BASELINE, date(2027, 1, 11))
    assert not schedule.in_dosing_period(protocol, BASELINE, date(2027, 1, 12))
    assert phases.week_start(date(2026, 11, 20), 24) == date(2027, 5, 7)

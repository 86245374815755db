"""Study phases of a patient by local date: pure rules from the baseline and the protocol.

Day 0 is the baseline date; week N starts on day 7N. The study ends on the day of week
`study.end_week` (the final visit's target): from that day on no dose is planned (the same
boundary as `trial.schedule.end_of_doses`). Phase and end-of-study notices follow the visits
staff record (`notice_of_visit`), not the calendar.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from trial import schedule
from trial.protocol import Phase, Protocol


@dataclass(frozen=True)
class PhaseChange:
    """The local date on which a patient enters a phase after the first."""

    phase: Phase
    starts: date


def week_start(baseline: date, week: int) -> date:
    """The local date on which study week `week` begins."""
    return baseline + timedelta(days=7 * week)


def end_of_study(protocol: Protocol, baseline: date) -> date:
    """The day the study ends for a patient: the first local date with no dose."""
    return schedule.end_of_doses(protocol, baseline)


def thank_you_day(protocol: Protocol, baseline: date) -> date:
    """The local date of the end-of-study thank-you: the day after the final visit's target."""
    return end_of_study(protocol, baseline) + timedelta(days=1)


def phase_on(protocol: Protocol, baseline: date, day: date) -> Phase | None:
    """The phase a local date falls in, or None before baseline and from the end of study."""
    if not schedule.in_dosing_period(protocol, baseline, day):
        return None
    return schedule.phase_of(protocol, baseline, day)


def phase_changes(protocol: Protocol, baseline: date) -> list[PhaseChange]:
    """Every phase change of a patient, in order (the first phase starts at baseline: none)."""
    return [PhaseChange(p, week_start(baseline, p.start_week)) for p in protocol.phases[1:]]


@dataclass(frozen=True)
class PhaseNotice:
    """The notice recording a visit sends: the next phase's (`phase.changed`, with its dose
    label) or the end of study (`phase.end`); `key` ends its outbox key."""

    key: str
    message_id: str
    dose_label: str | None = None


def final_visit(protocol: Protocol) -> str:
    """The name of the study's final visit (the latest in the table: W48)."""
    return max(protocol.visits.table, key=lambda v: v.day).name


def notice_of_visit(protocol: Protocol, name: str) -> PhaseNotice | None:
    """What a patient is told when the visit `name` is recorded done: a phase change at the
    visit of the week the next phase starts (W24), the end of study at the final visit (also
    when its window closes unvisited); None for any other visit."""
    template = protocol.visits.by_name(name)
    if template is None:
        return None
    if name == final_visit(protocol):
        return PhaseNotice("end", "phase.end")
    for phase in protocol.phases[1:]:
        if template.day >= 0 and template.week == phase.start_week:
            return PhaseNotice(phase.name, "phase.changed", phase.dose_label)
    return None

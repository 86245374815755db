"""Visit targets, windows and notice instants: pure rules from the baseline and the protocol.

Targets are counted from the baseline date, never from the previous visit. Every date here is a
local calendar date of the patient; instants are aware UTC datetimes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from trial.delivery import is_quiet as is_quiet  # the one quiet-hours rule, re-exported
from trial.protocol import QuietHours, Visits, VisitTemplate
from trial.schedule import local_instant


@dataclass(frozen=True)
class VisitPlan:
    """One visit of one patient as the protocol places it."""

    name: str
    target: date
    window_start: date
    window_end: date


@dataclass(frozen=True)
class Notice:
    """One notice of a visit: `days` before the visit, sendable from `at` until `expires`."""

    days: int
    at: datetime
    expires: datetime


def plan_visits(visits: Visits, baseline: date) -> list[VisitPlan]:
    """Every visit of the protocol's table for a patient with this baseline date."""
    plans = []
    for template in visits.table:
        target = baseline + timedelta(days=template.day)
        plans.append(VisitPlan(template.name, target,
                               target - timedelta(days=template.window_minus),
                               target + timedelta(days=template.window_plus)))
    return plans


def in_window(day: date, window_start: date, window_end: date) -> bool:
    """Whether a date falls inside a visit window (both ends included)."""
    return window_start <= day <= window_end


def notice_time(visits: Visits, quiet: QuietHours) -> time:
    """The local time notices go out: the protocol's, or the end of quiet hours if it is inside."""
    return quiet.end if quiet.contains(visits.notice_time) else visits.notice_time


def day_expiry(day: date, at: time, quiet: QuietHours, tz: str) -> datetime:
    """Until when a notice planned at `at` on `day` may still go out that same day.

    Until quiet hours begin that evening, else until local midnight: a notice that could not
    go out on its day is dropped, because its wording ("in 3 days", "tomorrow") is then wrong.
    """
    if quiet.start != quiet.end and quiet.start > at:
        return local_instant(day, quiet.start, tz)
    return local_instant(day + timedelta(days=1), time(0, 0), tz)


def notices(visits: Visits, quiet: QuietHours, scheduled: date, tz: str) -> list[Notice]:
    """The notices of a visit scheduled on a local date, latest-planned last."""
    at = notice_time(visits, quiet)
    result = []
    for days in visits.notice_days_before:
        day = scheduled - timedelta(days=days)
        result.append(Notice(days, local_instant(day, at, tz), day_expiry(day, at, quiet, tz)))
    return result


def window_closed(deadline: date, today: date) -> bool:
    """Whether a visit whose last allowed date is `deadline` can no longer happen in time."""
    return today > deadline


def holds_dose(template: VisitTemplate | None, visits: Visits, dose_time: str) -> bool:
    """Whether a patient is told to bring the day's dose to this visit rather than take it at
    home (a trough blood draw): only where the protocol asks for it, never at or before
    baseline (W0: no study drug has been taken yet), and only when the patient's dose time
    (local HH:MM) falls before the visit's usual time. Identical for both arms."""
    if template is None or not template.hold_dose or template.day <= 0 \
            or visits.usual_time is None:
        return False
    hour, _, minute = dose_time.partition(":")
    return time(int(hour), int(minute or 0)) < visits.usual_time


def instructions(template: VisitTemplate, *, hold: bool = False) -> list[str]:
    """The instruction names a visit's notices carry, in a fixed order (identical for all);
    `hold` (from `holds_dose`) adds the hold-dose instruction."""
    names = []
    if template.fasting:
        names.append("fasting")
    if template.bring_medication:
        names.append("bring_medication")
    if hold:
        names.append("hold_dose")
    return names


def notified_names(visits: Visits) -> list[str]:
    """Names of the visits that get notices."""
    return [v.name for v in visits.table if v.notify]


def tracked_names(visits: Visits) -> list[str]:
    """Visits whose window closing unvisited is reported: those on or after baseline.

    Screening precedes enrolment, so by the time a patient is enrolled it has happened.
    """
    return [v.name for v in visits.table if v.day >= 0]

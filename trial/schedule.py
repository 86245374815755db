"""When a patient's daily dose falls: local dates and wall times to UTC instants, DST included.

Every date here is a local calendar date of the patient; every instant an aware UTC datetime.
Day 0 is the baseline; doses run up to the end of study (baseline + 7 * study.end_week days),
that day excluded: the final visit's day has no home dose to plan.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from trial.protocol import Phase, Protocol, Reminders


def parse_dose_time(value: str) -> time:
    """A local dose time from `HH:MM`."""
    hour, _, minute = value.partition(":")
    return time(int(hour), int(minute))


def _wall(moment: datetime, zone: ZoneInfo) -> datetime:
    return moment.astimezone(zone).replace(tzinfo=None)


def local_instant(day: date, at: time, tz: str) -> datetime:
    """The UTC instant of a local wall time on a local date.

    A wall time skipped by a DST jump (02:30 on a spring-forward night) becomes the first valid
    instant after it (the moment of the jump, 03:00 new time); a repeated wall time (autumn fold)
    is its first occurrence, so a dose never falls twice.
    """
    zone = ZoneInfo(tz)
    wanted = datetime.combine(day, at)
    first = datetime.combine(day, at, tzinfo=zone).replace(fold=0).astimezone(UTC)
    if _wall(first, zone) == wanted:
        return first
    # In a gap: fold=1 reads the wall time with the offset after the jump (an instant before
    # the jump), fold=0 with the offset before it (after the jump). The jump lies between.
    low = datetime.combine(day, at, tzinfo=zone).replace(fold=1).astimezone(UTC)
    high = first
    if low > high:
        low, high = high, low
    while high - low > timedelta(seconds=1):
        middle = low + (high - low) / 2
        if _wall(middle, zone) >= wanted:
            high = middle
        else:
            low = middle
    return high.replace(microsecond=0)


def local_date(moment: datetime, tz: str) -> date:
    """The patient's local calendar date at an instant."""
    return moment.astimezone(ZoneInfo(tz)).date()


def end_of_doses(protocol: Protocol, baseline: date) -> date:
    """The first local date with no dose: baseline + study.end_week weeks."""
    return baseline + timedelta(days=7 * protocol.study.end_week)


def in_dosing_period(protocol: Protocol, baseline: date, day: date) -> bool:
    """Whether a local date is a study dosing day (baseline included, end of study excluded)."""
    return baseline <= day < end_of_doses(protocol, baseline)


def phase_of(protocol: Protocol, baseline: date, day: date) -> Phase:
    """The protocol phase of a dosing day, by study week."""
    return protocol.phase_at_week((day - baseline).days // 7)


@dataclass(frozen=True)
class DoseTimes:
    """The instants of one day's dose: reminder, follow-up and cut-off."""

    local_date: date
    due_at: datetime
    follow_up_at: datetime
    cutoff_at: datetime


def dose_times(reminders: Reminders, day: date, dose_time: str, tz: str) -> DoseTimes:
    """When a local date's dose is due, followed up and closed."""
    return _dose_times(reminders.follow_up_minutes, reminders.cutoff_minutes, day, dose_time, tz)


# Patients of a site share dose times and zones: a day's planning asks the same few questions.
@lru_cache(maxsize=4096)
def _dose_times(follow_up_minutes: int, cutoff_minutes: int, day: date, dose_time: str,
                tz: str) -> DoseTimes:
    due = local_instant(day, parse_dose_time(dose_time), tz)
    return DoseTimes(day, due, due + timedelta(minutes=follow_up_minutes),
                     due + timedelta(minutes=cutoff_minutes))

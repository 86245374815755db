"""Adherence from the dose records: what each local day was, the three figures and the flags.

What each figure counts (over a window of local dates, per patient; a site sums its patients):

- scheduled: days whose dose was closed (taken, late, skipped, missed or no_response). Days with
  no dose (before baseline, after the end of study, paused, withdrawn, opted out: a planned dose
  cancelled because the patient was no longer active) are not_scheduled; a dose still awaiting
  its answer or cut-off is open. Neither counts anywhere.
- answered: taken + late + skipped + missed (an answer before the cut-off).
- confirmed adherence = confirmed / scheduled, where confirmed = taken + late + no_response days
  the patient confirmed as taken after the cut-off (a real confirmation, kept with its time).
- response rate = answered / scheduled.
- worst case = (taken + late) / scheduled: the recorded states only, every no_response day
  counted as missed even if a confirmation came after the cut-off.
  Without late confirmations, confirmed and worst case are equal.
- Figures are None when nothing was scheduled. The conventional compliant band is 80-120 %.

Flags: confirmed adherence below 80 % over any 7 consecutive local days (windows with at least
one scheduled day), and 2 or more missed-or-no_response days in a row (counting scheduled days
only: a not-scheduled day neither breaks nor extends a run; taken, late or skipped breaks it).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from enum import StrEnum
from typing import Protocol

LOW_THRESHOLD = 0.80
BAND = (0.80, 1.20)
WINDOW_DAYS = 7
RUN_LENGTH = 2


class Day(StrEnum):
    """What one local day of one patient was."""

    TAKEN = "taken"
    LATE = "late"
    SKIPPED = "skipped"
    MISSED = "missed"
    NO_RESPONSE = "no_response"
    NOT_SCHEDULED = "not_scheduled"
    OPEN = "open"


_BY_STATE = {"taken": Day.TAKEN, "late": Day.LATE, "skipped": Day.SKIPPED,
             "missed": Day.MISSED, "no_response": Day.NO_RESPONSE,
             "scheduled": Day.OPEN, "reminded": Day.OPEN, "snoozed": Day.OPEN,
             "cancelled": Day.NOT_SCHEDULED}
SCHEDULED_DAYS = frozenset({Day.TAKEN, Day.LATE, Day.SKIPPED, Day.MISSED, Day.NO_RESPONSE})
NOT_TAKEN_RUN = frozenset({Day.MISSED, Day.NO_RESPONSE})


class DoseLike(Protocol):
    """The fields of a dose record adherence reads."""

    @property
    def state(self) -> str: ...

    @property
    def late_answer(self) -> str | None: ...


def day_status(dose: DoseLike | None) -> str:
    """The day's status from its dose record (None: no dose that day, not scheduled)."""
    if dose is None:
        return Day.NOT_SCHEDULED.value
    return _BY_STATE[dose.state].value


@dataclass(frozen=True)
class DayRecord:
    """One local day: its status and whether a 'taken' came after the cut-off."""

    day: date
    status: Day
    confirmed_late: bool = False

    @classmethod
    def of(cls, day: date, dose: DoseLike | None) -> DayRecord:
        status = Day(day_status(dose))
        late_taken = (dose is not None and status is Day.NO_RESPONSE
                      and dose.late_answer == "taken")
        return cls(day, status, late_taken)


@dataclass
class Counts:
    """Day counts over a window, and the three figures computed from them."""

    taken: int = 0
    late: int = 0
    skipped: int = 0
    missed: int = 0
    no_response: int = 0
    confirmed_after_cutoff: int = 0
    open: int = 0
    not_scheduled: int = 0

    @property
    def scheduled(self) -> int:
        return self.taken + self.late + self.skipped + self.missed + self.no_response

    @property
    def answered(self) -> int:
        return self.taken + self.late + self.skipped + self.missed

    @property
    def confirmed_adherence(self) -> float | None:
        """(taken + late + taken confirmed after the cut-off) / scheduled."""
        return _ratio(self.taken + self.late + self.confirmed_after_cutoff, self.scheduled)

    @property
    def response_rate(self) -> float | None:
        """answered / scheduled."""
        return _ratio(self.answered, self.scheduled)

    @property
    def worst_case(self) -> float | None:
        """(taken + late) / scheduled: every no_response day counted as missed."""
        return _ratio(self.taken + self.late, self.scheduled)

    def add(self, record: DayRecord) -> None:
        """Count one day."""
        setattr(self, record.status.value, getattr(self, record.status.value) + 1)
        if record.confirmed_late:
            self.confirmed_after_cutoff += 1

    def merge(self, other: Counts) -> None:
        """Add another window's (or patient's) counts."""
        for name in COUNT_FIELDS:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def as_dict(self) -> dict[str, int | float | None]:
        """Counts and figures (figures as fractions, 0..1) for reports and JSON."""
        data: dict[str, int | float | None] = {"scheduled": self.scheduled}
        data.update({name: getattr(self, name) for name in COUNT_FIELDS})
        data["answered"] = self.answered
        data["confirmed_adherence"] = _round(self.confirmed_adherence)
        data["response_rate"] = _round(self.response_rate)
        data["worst_case"] = _round(self.worst_case)
        return data


COUNT_FIELDS = ("taken", "late", "skipped", "missed", "no_response", "confirmed_after_cutoff",
                "open", "not_scheduled")


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def in_band(value: float | None) -> bool:
    """Whether a figure is in the compliant 80-120 % band."""
    return value is not None and BAND[0] <= value <= BAND[1]


def count(records: Iterable[DayRecord]) -> Counts:
    """Count days."""
    counts = Counts()
    for record in records:
        counts.add(record)
    return counts


def days_between(doses: Mapping[date, DoseLike], start: date, end: date) -> list[DayRecord]:
    """Every local date in [start, end) with its status (dates with no dose: not scheduled)."""
    return [DayRecord.of(start + timedelta(days=i), doses.get(start + timedelta(days=i)))
            for i in range((end - start).days)]


@dataclass(frozen=True)
class Flags:
    """Why a patient needs a look: low adherence over a week, or a run of missing days."""

    low_week: date | None = None  # first day of the first 7-day window below 80 %
    missing_run: date | None = None  # first day of the first run of 2+ missed/unanswered days
    names: tuple[str, ...] = field(default=())

    @property
    def any(self) -> bool:
        return bool(self.names)


def flags(records: Sequence[DayRecord]) -> Flags:
    """The adherence flags over consecutive days (records sorted by day, no gaps)."""
    low = _first_low_week(records)
    run = _first_missing_run(records)
    names = tuple(name for name, hit in (("low_7d", low), ("missing_run", run)) if hit)
    return Flags(low, run, names)


def _first_low_week(records: Sequence[DayRecord]) -> date | None:
    for i in range(len(records)):
        window = records[i:i + WINDOW_DAYS]
        if len(window) < WINDOW_DAYS and i > 0:
            break  # a shorter tail window only when the whole range is under a week
        rate = count(window).confirmed_adherence
        if rate is not None and rate < LOW_THRESHOLD:
            return records[i].day
    return None


def _first_missing_run(records: Sequence[DayRecord]) -> date | None:
    start: date | None = None
    length = 0
    for record in records:
        if record.status not in SCHEDULED_DAYS:
            continue
        if record.status in NOT_TAKEN_RUN:
            if length == 0:
                start = record.day
            length += 1
            if length >= RUN_LENGTH:
                return start
        else:
            length, start = 0, None
    return None


@dataclass(frozen=True)
class Summary:
    """One patient's adherence over a window."""

    counts: Counts
    flags: Flags


def summarize(records: Sequence[DayRecord]) -> Summary:
    """Counts, figures and flags of one patient's consecutive days."""
    return Summary(count(records), flags(records))

"""The on-call rota of a site: who is paged first at a local time. Pure.

A rule names who (a role, or one staff member as `staff:ID`) and when: either a dated period
(a holiday, a cover; local start and end, stored in UTC) or a weekly pattern (ISO weekdays and
local hours; an end at or before the start runs into the next day, 00:00-00:00 is the whole
day). Who is on call at an instant:

1. a dated period covering it (the latest rule when several do), else
2. the narrowest weekly rule covering it (fewest hours a week; the latest among equals), so
   "weekdays 08:00-18:00 coordinator" wins over "otherwise the investigator", else
3. nobody (the escalation chain starts at its first level).

A holiday (a local date in the protocol's list) counts as a Sunday; a night shift belongs to
the day it starts on.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

ALL_DAYS = frozenset(range(1, 8))
_DAY_NAMES = {"mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6, "sun": 7}
_DAY_SETS = {"all": ALL_DAYS, "daily": ALL_DAYS, "weekdays": frozenset(range(1, 6)),
             "weekend": frozenset({6, 7}), "weekends": frozenset({6, 7})}
_HOURS = re.compile(r"^(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})$")


class RotaError(ValueError):
    """A rota rule that cannot be understood."""


@dataclass(frozen=True)
class Rule:
    who: str  # a role, or "staff:ID"
    weekdays: frozenset[int] = ALL_DAYS
    start: time = time(0)
    end: time = time(0)
    period: tuple[datetime, datetime] | None = None  # UTC, [from, to)
    order: int = 0  # the later rule wins among equals (the rule's id)

    @property
    def hours_a_week(self) -> float:
        """How long the weekly rule covers in a week (its precedence: narrower wins)."""
        start = self.start.hour * 60 + self.start.minute
        end = self.end.hour * 60 + self.end.minute
        minutes = end - start if end > start else end - start + 24 * 60
        return len(self.weekdays) * minutes / 60

    def describe(self) -> str:
        """The rule as `engage oncall show` prints it."""
        if self.period is not None:
            return f"{self.period[0]:%Y-%m-%d %H:%M} to {self.period[1]:%Y-%m-%d %H:%M} UTC"
        return f"{days_text(self.weekdays)} {self.start:%H:%M}-{self.end:%H:%M}"


def parse_days(text: str) -> frozenset[int]:
    """`weekdays`, `weekend`, `all`, `mon-fri`, `sat,sun`, `1-5` -> ISO weekdays."""
    text = text.strip().lower()
    if text in _DAY_SETS:
        return _DAY_SETS[text]
    days: set[int] = set()
    for part in filter(None, (p.strip() for p in text.split(","))):
        first, _, last = part.partition("-")
        a, b = _day(first), _day(last or first)
        if b < a:
            raise RotaError(f"days: {part!r} runs backwards")
        days.update(range(a, b + 1))
    if not days:
        raise RotaError(f"days: {text!r} names no day")
    return frozenset(days)


def _day(text: str) -> int:
    text = text.strip()[:3]
    if text.isdigit() and 1 <= int(text) <= 7:
        return int(text)
    if text in _DAY_NAMES:
        return _DAY_NAMES[text]
    raise RotaError(f"days: {text!r} is no weekday (mon..sun or 1..7)")


def days_text(days: Collection[int]) -> str:
    """ISO weekdays as `mon-fri`, `sat,sun`, `all`."""
    names = {v: k for k, v in _DAY_NAMES.items()}
    if set(days) == set(ALL_DAYS):
        return "all"
    runs: list[list[int]] = []
    for day in sorted(days):
        if runs and runs[-1][-1] == day - 1:
            runs[-1].append(day)
        else:
            runs.append([day])
    return ",".join(names[r[0]] if len(r) == 1 else f"{names[r[0]]}-{names[r[-1]]}"
                    for r in runs)


def parse_hours(text: str) -> tuple[time, time]:
    """`08:00-18:00` -> (08:00, 18:00); `18:00-08:00` runs overnight."""
    match = _HOURS.match(text.strip())
    if not match:
        raise RotaError(f"hours: {text!r} is not HH:MM-HH:MM")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    if h1 > 23 or h2 > 24 or m1 > 59 or m2 > 59 or (h2 == 24 and m2):
        raise RotaError(f"hours: {text!r} is no time of day")
    return time(h1, m1), time(0) if h2 == 24 else time(h2, m2)


def _shift_day(rule: Rule, local: datetime) -> date | None:
    """The local date the rule's shift covering `local` started on, or None."""
    now, day = local.time().replace(tzinfo=None), local.date()
    if rule.start < rule.end:
        return day if rule.start <= now < rule.end else None
    if rule.start == rule.end:
        return day  # the whole day
    if now >= rule.start:
        return day
    return day - timedelta(days=1) if now < rule.end else None


def covers(rule: Rule, at: datetime, tz: ZoneInfo, holidays: Collection[date] = ()) -> bool:
    """Whether the rule puts its person on call at instant `at`."""
    if rule.period is not None:
        return rule.period[0] <= at.astimezone(UTC) < rule.period[1]
    day = _shift_day(rule, at.astimezone(tz))
    if day is None:
        return False
    weekday = 7 if day in holidays else day.isoweekday()
    return weekday in rule.weekdays


def on_call(rules: Iterable[Rule], at: datetime, tz: ZoneInfo,
            holidays: Collection[date] = ()) -> Rule | None:
    """The rule that decides who is on call at `at` (see the module's precedence), or None."""
    covering = [r for r in rules if covers(r, at, tz, holidays)]
    dated = [r for r in covering if r.period is not None]
    if dated:
        return max(dated, key=lambda r: r.order)
    weekly = [r for r in covering if r.period is None]
    if not weekly:
        return None
    return min(weekly, key=lambda r: (r.hours_a_week, -r.order))

"""Local dose times to UTC instants (DST gaps and folds), dosing days and phases."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from trial import delivery, schedule
from trial.protocol import Protocol

NY = "America/New_York"


def test_plain_zones_without_dst() -> None:
    assert schedule.local_instant(date(2026, 3, 2), time(8, 0), "Asia/Shanghai") == datetime(
        2026, 3, 2, 0, 0, tzinfo=UTC)
    assert schedule.local_instant(date(2026, 3, 2), time(8, 0), "Asia/Urumqi") == datetime(
        2026, 3, 2, 2, 0, tzinfo=UTC)


def test_spring_gap_moves_to_the_first_valid_instant() -> None:
    # 2026-03-08 02:00 EST jumps to 03:00 EDT: 02:30 does not exist; 03:00 EDT = 07:00 UTC.
    moment = schedule.local_instant(date(2026, 3, 8), time(2, 30), NY)
    assert moment == datetime(2026, 3, 8, 7, 0, tzinfo=UTC)
    assert schedule.local_instant(date(2026, 3, 8), time(3, 0), NY) == moment
    assert schedule.local_instant(date(2026, 3, 7), time(2, 30), NY) == datetime(
        2026, 3, 7, 7, 30, tzinfo=UTC)


def test_autumn_fold_takes_the_first_occurrence() -> None:
    # 2026-11-01 01:30 happens twice (EDT, then EST): the dose is at the first, once.
    assert schedule.local_instant(date(2026, 11, 1), time(1, 30), NY) == datetime(
        2026, 11, 1, 5, 30, tzinfo=UTC)


def test_same_wall_time_across_a_dst_change_is_a_different_utc_instant() -> None:
    before = schedule.local_instant(date(2026, 3, 7), time(8, 0), NY)
    after = schedule.local_instant(date(2026, 3, 9), time(8, 0), NY)
    assert (before.hour, after.hour) == (13, 12)


@given(day=st.dates(date(2025, 1, 1), date(2028, 12, 31)),
       minutes=st.integers(0, 24 * 60 - 1),
       tz=st.sampled_from([NY, "Europe/London", "Australia/Lord_Howe", "Asia/Shanghai"]))
def test_every_local_time_maps_to_one_instant_on_that_day_never_earlier(
        day: date, minutes: int, tz: str) -> None:
    at = time(minutes // 60, minutes % 60)
    moment = schedule.local_instant(day, at, tz)
    assert moment.tzinfo == UTC
    assert schedule.local_date(moment, tz) == day
    wall = moment.astimezone(ZoneInfo(tz)).replace(tzinfo=None)
    assert wall >= datetime.combine(day, at)  # shifted forward in a gap, never back
    assert wall - datetime.combine(day, at) <= timedelta(hours=1)


def test_dosing_days_run_from_baseline_to_the_end_of_study_excluded(protocol: Protocol) -> None:
    baseline = date(2026, 1, 5)
    end = schedule.end_of_doses(protocol, baseline)
    assert end == baseline + timedelta(days=7 * 48)
    assert schedule.in_dosing_period(protocol, baseline, baseline)
    assert not schedule.in_dosing_period(protocol, baseline, baseline - timedelta(days=1))
    assert schedule.in_dosing_period(protocol, baseline, end - timedelta(days=1))
    assert not schedule.in_dosing_period(protocol, baseline, end)


def test_phase_by_study_week(protocol: Protocol) -> None:
    baseline = date(2026, 1, 5)
    assert schedule.phase_of(protocol, baseline, baseline).name == "blinded"
    assert schedule.phase_of(protocol, baseline, baseline + timedelta(days=167)).name == "blinded"
    assert schedule.phase_of(protocol, baseline,
                             baseline + timedelta(days=168)).name == "open_label"


def test_only_active_patients_get_doses() -> None:
    assert delivery.receives_routine("active", False)
    assert not delivery.receives_routine("active", True)
    assert not delivery.receives_routine("paused", False)
    assert not delivery.receives_routine("withdrawn", False)


def test_dose_times_follow_the_protocol(protocol: Protocol) -> None:
    times = schedule.dose_times(protocol.reminders, date(2026, 3, 2), "08:00", "Asia/Shanghai")
    assert times.due_at == datetime(2026, 3, 2, 0, 0, tzinfo=UTC)
    assert times.follow_up_at - times.due_at == timedelta(minutes=60)
    assert times.cutoff_at - times.due_at == timedelta(minutes=720)

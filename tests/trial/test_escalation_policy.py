"""The escalation policy (issue 17): the on-call rota's precedence, and the cumulative ladder
(each rung pages again everyone before it; the top repeats, then the admins and the medical
monitor are added). Pure."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from trial.escalation import ladder, next_escalation, rung_at, sae_deadline, sae_reminder_after
from trial.oncall import RotaError, Rule, days_text, on_call, parse_days, parse_hours
from trial.protocol import Protocol, Tier

CHAIN = ["coordinator", "investigator", "pi"]
ALL = {"coordinator", "investigator", "pi"}
SHANGHAI = ZoneInfo("Asia/Shanghai")
OFFICE = Rule("coordinator", parse_days("weekdays"), time(8), time(18), order=1)
OTHERWISE = Rule("investigator", order=2)


def _local(*args: int) -> datetime:
    return datetime(*args, tzinfo=SHANGHAI)


def test_office_hours_coordinator_otherwise_investigator() -> None:
    rules = [OTHERWISE, OFFICE]
    assert on_call(rules, _local(2026, 3, 2, 10, 0), SHANGHAI) is OFFICE  # Monday 10:00
    assert on_call(rules, _local(2026, 3, 2, 18, 0), SHANGHAI) is OTHERWISE  # Monday 18:00
    assert on_call(rules, _local(2026, 3, 8, 2, 0), SHANGHAI) is OTHERWISE  # Sunday 02:00
    assert on_call(rules, _local(2026, 3, 7, 10, 0), SHANGHAI) is OTHERWISE  # Saturday
    # A holiday is a Sunday: nobody in the office on 1 May.
    may_day = _local(2026, 5, 1, 10, 0)
    assert on_call(rules, may_day, SHANGHAI) is OFFICE
    assert on_call(rules, may_day, SHANGHAI, holidays=[date(2026, 5, 1)]) is OTHERWISE
    assert on_call([], may_day, SHANGHAI) is None


def test_night_shift_belongs_to_the_day_it_starts_and_dated_periods_win() -> None:
    night = Rule("staff:7", parse_days("fri"), time(22), time(8), order=3)
    rules = [OTHERWISE, OFFICE, night]
    assert on_call(rules, _local(2026, 3, 6, 23, 0), SHANGHAI) is night  # Friday 23:00
    assert on_call(rules, _local(2026, 3, 7, 7, 59), SHANGHAI) is night  # Saturday 07:59
    assert on_call(rules, _local(2026, 3, 7, 8, 0), SHANGHAI) is OTHERWISE
    assert on_call(rules, _local(2026, 3, 5, 23, 0), SHANGHAI) is OTHERWISE  # Thursday
    start, end = _local(2026, 3, 6, 0, 0), _local(2026, 3, 9, 0, 0)
    cover = Rule("pi", period=(start.astimezone(UTC), end.astimezone(UTC)), order=4)
    assert on_call([*rules, cover], _local(2026, 3, 6, 23, 0), SHANGHAI) is cover
    assert on_call([*rules, cover], _local(2026, 3, 9, 0, 0), SHANGHAI) is OTHERWISE
    assert on_call([*rules, cover], _local(2026, 3, 9, 9, 0), SHANGHAI) is OFFICE


def test_rota_words() -> None:
    assert parse_days("mon-fri") == parse_days("weekdays") == frozenset({1, 2, 3, 4, 5})
    assert parse_days("sat,sun") == parse_days("weekend")
    assert days_text(parse_days("mon-wed,fri")) == "mon-wed,fri"
    assert parse_hours("18:00-08:00") == (time(18), time(8))
    assert parse_hours("08:00-24:00") == (time(8), time(0))
    for bad in ("fri-mon", "someday"):
        with pytest.raises(RotaError):
            parse_days(bad)
    with pytest.raises(RotaError):
        parse_hours("8-18")


def test_the_ladder_is_cumulative_repeats_the_top_then_adds_the_study() -> None:
    staffed = ALL | {"admin", "medical_monitor"}
    rungs, skipped = ladder(CHAIN, staffed, first="investigator", top_pages=2)
    assert skipped == ()
    assert [r.groups for r in rungs] == [
        ("investigator",),
        ("investigator", "coordinator"),
        ("investigator", "coordinator", "pi"),
        ("investigator", "coordinator", "pi"),  # the top's second page
        ("investigator", "coordinator", "pi", "admin", "medical_monitor")]
    assert rung_at(rungs, 9) == rungs[-1]  # then the last rung repeats
    office, _ = ladder(CHAIN, ALL | {"admin"}, first="coordinator", top_pages=1)
    assert [r.added for r in office] == [("coordinator",), ("investigator",), ("pi",),
                                         ("admin",)]


def test_levels_without_staff_are_skipped_and_named() -> None:
    rungs, skipped = ladder(CHAIN, {"pi", "admin"}, first="investigator", top_pages=2)
    assert skipped == ("coordinator", "investigator")
    assert [r.groups for r in rungs] == [("pi",), ("pi",), ("pi", "admin")]
    only_coordinator, _ = ladder(CHAIN, {"coordinator"}, top_pages=3)
    assert [r.groups for r in only_coordinator] == [("coordinator",)] * 3
    assert ladder(CHAIN, {"admin"}, first="coordinator") == ([], tuple(CHAIN))


def test_timeouts_sae_deadline_and_reminders(protocol: Protocol) -> None:
    now = datetime(2026, 3, 2, tzinfo=UTC)
    policy = protocol.escalation
    assert next_escalation(policy, Tier.EMERGENCY, now) == now + timedelta(minutes=15)
    assert next_escalation(policy, Tier.SAME_DAY, now) == now + timedelta(hours=2)
    assert next_escalation(policy, Tier.EMERGENCY, now, top_reached=True) == \
        now + timedelta(minutes=30)
    deadline = sae_deadline(policy, now)
    assert deadline == now + timedelta(hours=24)
    first = sae_reminder_after(policy, deadline, None)
    assert first == deadline - timedelta(hours=4)
    assert sae_reminder_after(policy, deadline, first) == deadline
    assert sae_reminder_after(policy, deadline, deadline) is None

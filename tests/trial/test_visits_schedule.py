"""Visit targets, windows and notice instants from the bundled protocol (pure rules)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time

import pytest

from trial import visits as rules
from trial.protocol import Protocol, QuietHours

D = date

# Written by hand from the clinical rules (target = baseline + 7N days; windows +/-3 to week 4,
# +/-7 after; screening up to 4 weeks before baseline). Baseline Tue 2026-02-10, a New York
# patient: W4 straddles the March DST change, W40/W44 the November one, W48 is in 2027.
NEW_YORK_FEB = [
    ("SCR", D(2026, 1, 13), D(2026, 1, 13), D(2026, 2, 9)),
    ("W0", D(2026, 2, 10), D(2026, 2, 10), D(2026, 2, 10)),
    ("W4", D(2026, 3, 10), D(2026, 3, 7), D(2026, 3, 13)),
    ("W8", D(2026, 4, 7), D(2026, 3, 31), D(2026, 4, 14)),
    ("W12", D(2026, 5, 5), D(2026, 4, 28), D(2026, 5, 12)),
    ("W16", D(2026, 6, 2), D(2026, 5, 26), D(2026, 6, 9)),
    ("W20", D(2026, 6, 30), D(2026, 6, 23), D(2026, 7, 7)),
    ("W24", D(2026, 7, 28), D(2026, 7, 21), D(2026, 8, 4)),
    ("W28", D(2026, 8, 25), D(2026, 8, 18), D(2026, 9, 1)),
    ("W32", D(2026, 9, 22), D(2026, 9, 15), D(2026, 9, 29)),
    ("W36", D(2026, 10, 20), D(2026, 10, 13), D(2026, 10, 27)),
    ("W40", D(2026, 11, 17), D(2026, 11, 10), D(2026, 11, 24)),
    ("W44", D(2026, 12, 15), D(2026, 12, 8), D(2026, 12, 22)),
    ("W48", D(2027, 1, 12), D(2027, 1, 5), D(2027, 1, 19)),
]

# Baseline Fri 2026-11-20: from W8 on every visit is in 2027.
LATE_2026 = [
    ("SCR", D(2026, 10, 23), D(2026, 10, 23), D(2026, 11, 19)),
    ("W0", D(2026, 11, 20), D(2026, 11, 20), D(2026, 11, 20)),
    ("W4", D(2026, 12, 18), D(2026, 12, 15), D(2026, 12, 21)),
    ("W8", D(2027, 1, 15), D(2027, 1, 8), D(2027, 1, 22)),
    ("W12", D(2027, 2, 12), D(2027, 2, 5), D(2027, 2, 19)),
    ("W16", D(2027, 3, 12), D(2027, 3, 5), D(2027, 3, 19)),
    ("W20", D(2027, 4, 9), D(2027, 4, 2), D(2027, 4, 16)),
    ("W24", D(2027, 5, 7), D(2027, 4, 30), D(2027, 5, 14)),
    ("W28", D(2027, 6, 4), D(2027, 5, 28), D(2027, 6, 11)),
    ("W32", D(2027, 7, 2), D(2027, 6, 25), D(2027, 7, 9)),
    ("W36", D(2027, 7, 30), D(2027, 7, 23), D(2027, 8, 6)),
    ("W40", D(2027, 8, 27), D(2027, 8, 20), D(2027, 9, 3)),
    ("W44", D(2027, 9, 24), D(2027, 9, 17), D(2027, 10, 1)),
    ("W48", D(2027, 10, 22), D(2027, 10, 15), D(2027, 10, 29)),
]


@pytest.mark.parametrize(("baseline", "table"), [
    (D(2026, 2, 10), NEW_YORK_FEB), (D(2026, 11, 20), LATE_2026)])
def test_targets_and_windows_match_the_hand_table(protocol: Protocol, baseline: date,
                                                   table: list[tuple[str, date, date, date]]
                                                   ) -> None:
    plans = rules.plan_visits(protocol.visits, baseline)
    assert [(p.name, p.target, p.window_start, p.window_end) for p in plans] == table


def test_a_window_can_straddle_new_year(protocol: Protocol) -> None:
    w4 = rules.plan_visits(protocol.visits, D(2026, 12, 5))[2]
    assert (w4.name, w4.window_start, w4.target, w4.window_end) == (
        "W4", D(2026, 12, 30), D(2027, 1, 2), D(2027, 1, 5))


def test_notices_keep_local_time_across_spring_dst(protocol: Protocol) -> None:
    # W4 of the New York patient on 2026-03-10; clocks jump forward on Sunday 2026-03-08.
    notices = rules.notices(protocol.visits, protocol.quiet_hours, D(2026, 3, 10),
                            "America/New_York")
    assert [(n.days, n.at, n.expires) for n in notices] == [
        (3, datetime(2026, 3, 7, 14, 0, tzinfo=UTC),   # 09:00 EST
         datetime(2026, 3, 8, 3, 0, tzinfo=UTC)),      # 22:00 EST: quiet hours begin
        (1, datetime(2026, 3, 9, 13, 0, tzinfo=UTC),   # 09:00 EDT
         datetime(2026, 3, 10, 2, 0, tzinfo=UTC)),     # 22:00 EDT
    ]


def test_notices_keep_local_time_across_autumn_dst(protocol: Protocol) -> None:
    # A visit on Tue 2026-11-03: the New York clocks fall back on Sunday 2026-11-01.
    notices = rules.notices(protocol.visits, protocol.quiet_hours, D(2026, 11, 3),
                            "America/New_York")
    assert [n.at for n in notices] == [datetime(2026, 10, 31, 13, 0, tzinfo=UTC),
                                       datetime(2026, 11, 2, 14, 0, tzinfo=UTC)]


def test_notices_across_new_year_in_shanghai(protocol: Protocol) -> None:
    notices = rules.notices(protocol.visits, protocol.quiet_hours, D(2027, 1, 2),
                            "Asia/Shanghai")
    assert [n.at for n in notices] == [datetime(2026, 12, 30, 1, 0, tzinfo=UTC),
                                       datetime(2027, 1, 1, 1, 0, tzinfo=UTC)]


def test_a_wall_time_skipped_by_dst_moves_forward() -> None:
    # The dose schedule's rule: the first valid instant after the gap, the jump itself.
    at = rules.local_instant(D(2026, 3, 8), time(2, 30), "America/New_York")
    assert at == datetime(2026, 3, 8, 7, 0, tzinfo=UTC)  # 03:00 EDT


def test_notice_time_inside_quiet_hours_moves_to_their_end(protocol: Protocol) -> None:
    visits = protocol.visits.model_copy(update={"notice_time": time(6, 0)})
    quiet = QuietHours(start=time(22, 0), end=time(7, 30))
    assert rules.notice_time(visits, quiet) == time(7, 30)
    assert rules.notice_time(protocol.visits, quiet) == time(9, 0)
    # Without quiet hours a notice may go out until midnight.
    none = QuietHours(start=time(0, 0), end=time(0, 0))
    assert rules.day_expiry(D(2026, 5, 1), time(9, 0), none, "Asia/Shanghai") == \
        datetime(2026, 5, 1, 16, 0, tzinfo=UTC)


def test_every_notice_is_outside_quiet_hours(protocol: Protocol) -> None:
    for tz in ("Asia/Shanghai", "America/New_York", "Europe/London", "Australia/Sydney"):
        for plan in rules.plan_visits(protocol.visits, D(2026, 2, 10)):
            for notice in rules.notices(protocol.visits, protocol.quiet_hours, plan.target, tz):
                assert not rules.is_quiet(notice.at, protocol.quiet_hours, tz)
                assert rules.is_quiet(notice.expires, protocol.quiet_hours, tz)


def test_instructions_and_which_visits_are_notified(protocol: Protocol) -> None:
    table = {v.name: v for v in protocol.visits.table}
    assert rules.instructions(table["W0"]) == ["fasting"]
    assert rules.instructions(table["W8"], hold=True) == ["bring_medication", "hold_dose"]
    assert rules.instructions(table["W12"], hold=True) == ["fasting", "bring_medication",
                                                           "hold_dose"]
    assert rules.instructions(table["SCR"]) == []
    # Holding the dose (issue 16): off in the bundled file; when on, never at W0, and only
    # for a dose due before the visits' usual time.
    assert not any(rules.holds_dose(v, protocol.visits, "07:00") for v in table.values())
    held = protocol.visits.model_copy(update={"table": [
        v.model_copy(update={"hold_dose": True}) for v in protocol.visits.table]})
    assert protocol.visits.usual_time is not None
    w0, w4 = held.by_name("W0"), held.by_name("W4")
    assert rules.holds_dose(w4, held, "08:00")
    assert not rules.holds_dose(w0, held, "08:00")
    assert not rules.holds_dose(w4, held, "20:00")
    assert not rules.holds_dose(w4, held, protocol.visits.usual_time.strftime("%H:%M"))
    assert "SCR" not in rules.notified_names(protocol.visits)
    assert len(rules.notified_names(protocol.visits)) == 13
    assert rules.tracked_names(protocol.visits) == rules.notified_names(protocol.visits)
    assert rules.in_window(D(2026, 3, 7), D(2026, 3, 7), D(2026, 3, 13))
    assert not rules.in_window(D(2026, 3, 14), D(2026, 3, 7), D(2026, 3, 13))
    assert not rules.window_closed(D(2026, 3, 13), D(2026, 3, 13))
    assert rules.window_closed(D(2026, 3, 13), D(2026, 3, 14))

"""The delivery policy as pure rules (trial/delivery.py): routine eligibility, quiet hours, the
daily SMS cap and its importance table, the reroute rule and `screen()`, table by table."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from trial import delivery
from trial.delivery import CANCEL, HOLD, SEND, RecipientState, Verdict
from trial.protocol import Protocol, QuietHours, load_protocol

SHANGHAI = ZoneInfo("Asia/Shanghai")
QUIET = QuietHours(start="22:00", end="07:00")
# 2026-03-02 08:00 in Shanghai (00:00 UTC): outside quiet hours.
DAY = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)
NIGHT = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)  # 23:00 in Shanghai
MORNING_END = datetime(2026, 3, 2, 23, 0, tzinfo=UTC)  # 07:00 on 3 March in Shanghai


@dataclass(frozen=True)
class Row:
    kind: str = "dose"
    lane: str = "routine"
    channel: str = "telegram"


@dataclass(frozen=True)
class Route:
    channel: str
    address: str


SMS = Route("sms", "+8613800138000")
ACTIVE = RecipientState(status="active", tz=SHANGHAI)


@pytest.mark.parametrize(("status", "opted_out", "receives", "refusal"), [
    ("active", False, True, None),
    ("active", True, False, "patient opted out"),
    ("paused", False, False, "patient paused"),
    ("withdrawn", False, False, "patient withdrawn"),
    ("paused", True, False, "patient paused"),
])
def test_one_predicate_decides_routine_eligibility(status: str, opted_out: bool, receives: bool,
                                                   refusal: str | None) -> None:
    assert delivery.receives_routine(status, opted_out) is receives
    assert delivery.routine_refusal(status, opted_out) == refusal


@pytest.mark.parametrize(("key", "kind"), [
    ("reply:12:0", "reply"), ("dose:reminder:7", "dose"), ("alert:3:page:1:4:sms", "alert"),
    ("digest:BJ01:2026-03-02:5:1", "digest"), ("unknown:sms:+86138", "unknown"),
    ("inbound_failed:4:2", "inbound_failed"), ("plain", "plain"),
])
def test_kind_defaults_to_the_keys_first_part(key: str, kind: str) -> None:
    assert delivery.kind_of(key) == kind


@pytest.mark.parametrize(("now", "until"), [
    (DAY, None),
    (NIGHT, MORNING_END),  # 23:00: until 07:00 the next morning
    (datetime(2026, 3, 2, 18, 30, tzinfo=UTC), MORNING_END),  # 02:30 on 3 March
    (datetime(2026, 3, 2, 22, 59, tzinfo=UTC), MORNING_END),  # 06:59
    (MORNING_END, None),  # 07:00 is the end, not inside
    (datetime(2026, 3, 2, 13, 59, tzinfo=UTC), None),  # 21:59
    (datetime(2026, 3, 2, 14, 0, tzinfo=UTC), MORNING_END),  # 22:00 is inside
])
def test_quiet_hours_hold_until_their_local_end(now: datetime, until: datetime | None) -> None:
    assert delivery.quiet_until(QUIET, now, SHANGHAI) == until
    assert delivery.is_quiet(now, QUIET, "Asia/Shanghai") is (until is not None)
    assert delivery.is_quiet(now, QUIET, SHANGHAI) is (until is not None)


def test_no_quiet_hours_when_start_equals_end() -> None:
    none = QuietHours(start="00:00", end="00:00")
    assert delivery.quiet_until(none, NIGHT, SHANGHAI) is None


def test_local_day_is_the_recipients_calendar_day() -> None:
    start, end = delivery.local_day(NIGHT, SHANGHAI)  # 23:00 on 2 March in Shanghai
    assert (start, end) == (datetime(2026, 3, 1, 16, 0, tzinfo=UTC),
                            datetime(2026, 3, 2, 16, 0, tzinfo=UTC))


@pytest.mark.parametrize(("template_id", "rank"), [
    ("dose.reminder", 100), ("dose.reminder_hold_for_visit", 100), ("visit.notice_3", 80),
    ("phase.change", 70), ("dose.follow_up", 60), ("dose.followup", 60), ("dose.taken", 50),
    ("report.reply_routine", 40), ("questionnaire.ask", 40), ("chat.help", 30),
    ("digest.header", 20), ("delivery.failed", 10), ("", 10),
])
def test_importance_table_comes_from_the_protocol(protocol: Protocol, template_id: str,
                                                  rank: int) -> None:
    assert delivery.importance(protocol.sms, template_id) == rank


def test_importance_table_is_the_protocol_files() -> None:
    sms = load_protocol().sms
    changed = sms.model_copy(update={"importance": {"chat.": 200}, "default_importance": 1})
    assert delivery.importance(changed, "chat.help") == 200
    assert delivery.importance(changed, "dose.reminder") == 1


@pytest.mark.parametrize(("used", "in_flight", "accepted", "others", "dropped"), [
    (0, 0, 0, [], None),
    (5, 0, 0, [], None),  # the sixth fits
    (6, 0, 0, [], "daily SMS cap of 6 reached"),
    (4, 1, 1, [], "daily SMS cap of 6 reached"),  # other claims and this one count too
    (4, 0, 0, [(-100, DAY, 9)], None),  # budget 2: one more important ahead still leaves one
    (4, 0, 0, [(-100, DAY, 9), (-80, DAY, 8)],
     "daily SMS cap of 6: 2 more important SMS due today"),
    (4, 0, 0, [(-60, DAY + timedelta(minutes=1), 1), (-60, DAY, 9)], None),  # due later, newer
    (4, 0, 0, [(-60, DAY - timedelta(minutes=1), 9), (-60, DAY, 1)],
     "daily SMS cap of 6: 2 more important SMS due today"),  # earlier due, then older row
    (4, 0, 0, [(-10, DAY, 1), (-10, DAY, 2), (-10, DAY, 3)], None),  # less important
])
def test_daily_cap_keeps_the_most_important(used: int, in_flight: int, accepted: int,
                                            others: list[delivery.CapRank],
                                            dropped: str | None) -> None:
    mine = (-60, DAY, 5)
    left = delivery.cap_left(6, used=used, in_flight=in_flight, accepted=accepted)
    assert delivery.over_cap(6, left, mine=mine, others=others) == dropped


def test_cap_rank_orders_by_importance_then_due_then_row(protocol: Protocol) -> None:
    ranks = sorted([
        delivery.cap_rank(protocol.sms, "chat.help", DAY, 1),
        delivery.cap_rank(protocol.sms, "dose.follow_up", DAY, 3),
        delivery.cap_rank(protocol.sms, "dose.reminder", DAY + timedelta(hours=1), 4),
        delivery.cap_rank(protocol.sms, "dose.follow_up", DAY, 2),
    ])
    assert [r[2] for r in ranks] == [4, 2, 3, 1]


@pytest.mark.parametrize(("channel", "reachable", "route", "moved", "refusal"), [
    ("telegram", True, SMS, None, None),  # reachable: stays
    ("telegram", False, SMS, SMS, None),  # blocked the bot: by SMS
    ("telegram", False, None, None, "patient unreachable by telegram"),
    ("sms", False, SMS, None, "patient unreachable by sms"),  # the same channel: nowhere
])
def test_reroute_rule(channel: str, reachable: bool, route: Route | None, moved: Route | None,
                      refusal: str | None) -> None:
    assert delivery.reroute(channel, reachable=reachable, route=route) == (moved, refusal)


NIGHT_HOLD = f"quiet hours until {MORNING_END.isoformat()}"


@pytest.mark.parametrize(("row", "recipient", "now", "verdict"), [
    # a patient's routine message by day: sent
    (Row(), ACTIVE, DAY, Verdict(SEND)),
    # paused, withdrawn, opted out: routine cancelled, safety and replies still go
    (Row(), RecipientState(status="paused", tz=SHANGHAI), DAY, Verdict(CANCEL, "patient paused")),
    (Row(), RecipientState(status="withdrawn", tz=SHANGHAI), DAY,
     Verdict(CANCEL, "patient withdrawn")),
    (Row(), RecipientState(status="active", opted_out=True, tz=SHANGHAI), DAY,
     Verdict(CANCEL, "patient opted out")),
    (Row(lane="safety"), RecipientState(status="paused", tz=SHANGHAI), DAY, Verdict(SEND)),
    (Row(kind="reply"), RecipientState(status="active", opted_out=True, tz=SHANGHAI), NIGHT,
     Verdict(SEND)),
    # quiet hours hold routine messages (patients and staff), never safety ones or replies
    (Row(), ACTIVE, NIGHT, Verdict(HOLD, NIGHT_HOLD, until=MORNING_END)),
    (Row(lane="safety"), ACTIVE, NIGHT, Verdict(SEND)),
    (Row(kind="reply"), ACTIVE, NIGHT, Verdict(SEND)),
    (Row(kind="digest"), RecipientState(tz=SHANGHAI), NIGHT,
     Verdict(HOLD, NIGHT_HOLD, until=MORNING_END)),
    (Row(kind="group"), RecipientState(), NIGHT, Verdict(SEND)),  # nobody known: no zone
    # a staff member no longer active gets nothing, not even a page
    (Row(lane="safety", kind="alert"), RecipientState(active=False), DAY,
     Verdict(CANCEL, "staff member no longer active")),
    # the reroute rule, for patients' messages that are not replies
    (Row(), RecipientState(status="active", tz=SHANGHAI, reachable=False, route=SMS), DAY,
     Verdict(SEND, route=SMS, capped=True)),
    (Row(), RecipientState(status="active", tz=SHANGHAI, reachable=False, route=SMS), NIGHT,
     Verdict(HOLD, NIGHT_HOLD, until=MORNING_END, route=SMS)),
    (Row(lane="safety"), RecipientState(status="paused", reachable=False, route=SMS), NIGHT,
     Verdict(SEND, route=SMS)),
    (Row(), RecipientState(status="active", tz=SHANGHAI, reachable=False), DAY,
     Verdict(CANCEL, "patient unreachable by telegram")),
    (Row(kind="reply"), RecipientState(status="active", reachable=False), DAY, Verdict(SEND)),
    # the daily SMS cap decides on routine SMS only
    (Row(channel="sms"), ACTIVE, DAY, Verdict(SEND, capped=True)),
    (Row(channel="sms", kind="digest"), RecipientState(), DAY, Verdict(SEND, capped=True)),
    (Row(channel="sms", lane="safety"), ACTIVE, DAY, Verdict(SEND)),
    (Row(channel="sms", kind="reply"), ACTIVE, DAY, Verdict(SEND)),
])
def test_screen(row: Row, recipient: RecipientState, now: datetime, verdict: Verdict) -> None:
    assert delivery.screen(row, recipient, quiet=QUIET, now=now) == verdict

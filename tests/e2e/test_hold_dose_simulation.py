"""Acceptance 3 (issue 16): visit-day dose instructions in a simulated trial, read in the SMS the
patients actually received (the real Twilio channel to the fake Twilio API), with a protocol that
holds the dose before trough visits (the bundled one holds none until confirmed):

- W0 (no study drug yet): no notice and no reminder says to bring the dose or not take it;
- an evening doser (20:00, after the visits' usual 09:00) is never told not to take it;
- a visit recorded done before the dose time: that day's reminder is the usual one, and so is a
  snoozed reminder after the visit was recorded done;
- a visit moved within its window: the hold follows the new date, not the scheduled one;
- wherever the dose is held, the text also says to take it as usual when not going that day.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, time, timedelta
from urllib.parse import parse_qs, urlparse
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from bot.channels.twilio import SmsChannel
from bot.conversation import Conversation, InboundEvent
from engage.clock import SimulatedClock
from fakes.servers import outbox_sender
from fakes.twilio_api import FakeTwilioAPI
from scheduler.tick import run_tick
from storage.audit import Actor
from storage.db import Database
from storage.models import OutboundMessage
from study import visits
from tests.e2e.test_visits_simulation import holding_doses
from tests.factories import add_site, enrol
from trial.protocol import Protocol

SH = ZoneInfo("Asia/Shanghai")
BASELINE = date(2026, 3, 4)
START = datetime(2026, 2, 27, tzinfo=UTC)
NURSE = Actor.staff(1)
# Who, dose time: W0 morning doser, evening doser, visit done before the dose, visit moved.
PEOPLE = {"W0": "07:00", "EVENING": "20:00", "DONE": "07:30", "MOVED": "07:00"}
PHONES = {name: f"+86138000001{i:02d}" for i, name in enumerate(PEOPLE)}
DAYS = [*range(-3, 32), *range(53, 57), *range(81, 85)]
# What tells a patient not to take the dose at home (the reminder's and the notice's wording).
DO_NOT_TAKE = ("先别吃", "别在家吃")
TAKE_IF_NOT_GOING = ("不去门诊请按平时时间吃", "不去就照常吃")


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(BASELINE + timedelta(days=day), time(hour, minute),
                            tzinfo=SH).astimezone(UTC)


@pytest.mark.timeout(600)  # a hang guard; the run takes well under a minute per database
async def test_visit_day_instructions_are_right_on_every_day(
        db: Database, protocol: Protocol, fake_twilio: FakeTwilioAPI, sms: SmsChannel) -> None:
    protocol = holding_doses(protocol)
    assert protocol.visits.usual_time == time(9)
    clock = SimulatedClock(START)
    await add_site(db, START, site="S01")
    for name, dose_time in PEOPLE.items():
        await enrol(db, protocol, START, subject=f"S01-{name}", phone=PHONES[name],
                    language="zh", site="S01", baseline=BASELINE, dose_time=dose_time)
    conversation = Conversation(db, protocol, clock)
    send = outbox_sender(db, protocol, {"sms": sms}, clock)

    async def staff(fn: Callable[..., Awaitable[object]], name: str, *args: object,
                    **kwargs: object) -> None:
        async with db.write() as session:
            patient = await visits.find_patient(session, f"S01-{name}")
            await fn(session, protocol, patient, *args, now=clock.now(), actor=NURSE, **kwargs)

    async def writes(name: str, text: str) -> None:
        await conversation.handle(InboundEvent("sms", f"SM{clock.now().timestamp():.0f}{name}",
                                               PHONES[name], text, None, clock.now(), {}))

    actions: dict[datetime, list[Callable[[], Awaitable[None]]]] = {
        # DONE's W4 is recorded done at 07:15, before the 07:30 dose.
        at(28, 7, 15): [lambda: staff(visits.mark_done, "DONE", "W4", done_date=None)],
        # DONE snoozes the W12 hold reminder, then the visit is recorded done before the
        # snoozed reminder comes.
        at(84, 7, 35): [lambda: writes("DONE", "3")],
        at(84, 7, 50): [lambda: staff(visits.mark_done, "DONE", "W12", done_date=None)],
        # MOVED's W4 (day 28, window 21-35) moves to day 30 after its first notice.
        at(26, 12): [lambda: staff(visits.move_visit, "MOVED", "W4", BASELINE + timedelta(30),
                                   reason="patient asked")],
    }
    moments = {at(day, hour, minute) for day in DAYS
               for hour, minute in ((7, 0), (7, 30), (8, 5), (9, 0), (20, 0), (21, 5))}
    for moment in sorted(moments | set(actions)):
        clock.set(moment)
        for action in actions.get(moment, []):
            await action()
        await run_tick(db, protocol, moment)
        await send.run_once()

    async with db.read() as session:
        rows = {row.id: row for row in (await session.execute(select(OutboundMessage))).scalars()}
    got: dict[str, list[tuple[int, str, str]]] = {name: [] for name in PEOPLE}
    for request in fake_twilio.sent_to():
        row = rows[int(parse_qs(urlparse(request.params["StatusCallback"]).query)
                       ["message_id"][0])]
        name = next(n for n, phone in PHONES.items() if phone == request.params["To"])
        day = (request_time(row).astimezone(SH).date() - BASELINE).days
        got[name].append((day, row.template_id, request.params["Body"]))

    def held(text: str) -> bool:
        return any(words in text for words in DO_NOT_TAKE)

    def reminders(name: str, day: int) -> list[tuple[str, str]]:
        return [(template, body) for d, template, body in got[name]
                if d == day and template.startswith("dose.reminder")]

    # Wherever a dose is held, the text says what to do when not going to the clinic.
    for name in PEOPLE:
        for _, _, body in got[name]:
            if held(body):
                assert any(words in body for words in TAKE_IF_NOT_GOING), (name, body)
    # W0: the notices before it and the baseline day's reminder hold nothing.
    assert [t for d, t, _ in got["W0"] if d in (-3, -1)] == ["visit.notice_in_days",
                                                             "visit.notice_tomorrow"]
    assert not [b for d, _, b in got["W0"] if d <= 0 and held(b)]
    assert [t for t, _ in reminders("W0", 0)] == ["dose.reminder"]
    # ... while the same morning doser's W4 is held, notices and reminder alike.
    assert [t for t, _ in reminders("W0", 28)] == ["dose.reminder_hold_for_visit"]
    assert [held(b) for d, t, b in got["W0"] if t.startswith("visit.notice")
            and 20 <= d <= 28] == [True, True]
    # The evening doser is never told not to take it (the visit is over by 20:00).
    assert not [b for _, _, b in got["EVENING"] if held(b)]
    assert [t for t, _ in reminders("EVENING", 28)] == ["dose.reminder"]
    # Visit recorded done at 07:15, dose at 07:30: the usual reminder.
    assert [t for t, _ in reminders("DONE", 28)] == ["dose.reminder"]
    assert [t for t, _ in reminders("DONE", 56)] == ["dose.reminder_hold_for_visit"]
    # W12: held at 07:30; snoozed; recorded done at 07:50; the 08:05 reminder is the usual one.
    assert [t for t, _ in reminders("DONE", 84)] == ["dose.reminder_hold_for_visit",
                                                     "dose.reminder"]
    # Moved from day 28 to day 30: the hold follows the new date.
    assert [t for t, _ in reminders("MOVED", 28)] == ["dose.reminder"]
    assert [t for t, _ in reminders("MOVED", 29)] == ["dose.reminder"]
    assert [t for t, _ in reminders("MOVED", 30)] == ["dose.reminder_hold_for_visit"]
    moved_notices = [(d, b) for d, t, b in got["MOVED"] if t.startswith("visit.notice")
                     and 20 <= d <= 30]
    # The day-25 notice (for day 28) went before the move; then the new date's two notices.
    assert [d for d, _ in moved_notices] == [25, 27, 29]
    assert "4月3日" in moved_notices[1][1]  # day 30
    assert all(held(b) for _, b in moved_notices)


def request_time(row: OutboundMessage) -> datetime:
    """When a row went out (the simulation sends each at its due instant or the next tick)."""
    assert row.sent_at is not None
    return row.sent_at

"""The weekly check-in offer: on the protocol's weekday at its local time, once a day per zone.

Patients of one time zone share their check-in instant, so the work goes zone by zone: a zone
whose offers went out is marked in `tick_runs` (`checkin:{tz}:{local date}`) and not looked at
again that day. Most of the week no zone on Earth is in its check-in window and nothing here
touches the database at all.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, tzinfo
from functools import lru_cache
from zoneinfo import ZoneInfo, available_timezones

from sqlalchemy import ColumnElement, and_, exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage import runs
from storage.models import ConversationState, Patient
from study import outgoing
from study.outgoing import Choice, Reply
from study.recipients import receives_routine_sql
from trial.protocol import Protocol, Reminders

# A check-in missed by more than this (the scheduler was down) is not offered late.
CHECKIN_GRACE = timedelta(hours=6)


# Every UTC offset of the time-zone database lies within these bounds.
EARLIEST_OFFSET = timedelta(hours=-12)
LATEST_OFFSET = timedelta(hours=14)


def _offer_window(at: time, day: date, tz: tzinfo | None = None) -> tuple[datetime, datetime]:
    """A local day's check-in window: from the offer time for the grace period, that day only."""
    start = datetime.combine(day, at, tz)
    return start, min(start + CHECKIN_GRACE, datetime.combine(day + timedelta(days=1),
                                                               time(0), tz))


def may_be_checkin_time(reminders: Reminders, now: datetime) -> bool:
    """Whether some UTC offset puts `now` inside a local check-in window (pure; no zones)."""
    wall = now.astimezone(UTC).replace(tzinfo=None)
    low, high = wall + EARLIEST_OFFSET, wall + LATEST_OFFSET
    for shift in (-1, 0, 1):
        day = wall.date() + timedelta(days=shift)
        if day.isoweekday() == reminders.checkin_weekday:
            start, end = _offer_window(reminders.checkin_time, day)
            if start <= high and low < end:
                return True
    return False


@lru_cache(maxsize=1)
def _zones() -> tuple[tuple[str, ZoneInfo], ...]:
    # Held here: ZoneInfo keeps few zones cached and would read the others from disk each time.
    return tuple((name, ZoneInfo(name)) for name in sorted(available_timezones()))


def checkin_zones(reminders: Reminders, now: datetime) -> dict[str, date]:
    """The time zones whose check-in window holds `now`, each with its local date then."""
    if not may_be_checkin_time(reminders, now):
        return {}
    return dict(_zones_in_window(reminders.checkin_weekday, reminders.checkin_time, now))


@lru_cache(maxsize=8)  # the probe and the step of one pass ask for the same instant
def _zones_in_window(weekday: int, at: time, now: datetime) -> tuple[tuple[str, date], ...]:
    # The window is local wall time (`_offer_window` of the zone's date): compared as wall
    # clock times here, the weekday first, so most zones cost one conversion and one test.
    start, end = _offer_window(at, date(2001, 1, 1))
    until = end.time() if end.date() == start.date() else None  # None: up to midnight
    zones = []
    for name, zone in _zones():
        local = now.astimezone(zone)
        if local.isoweekday() != weekday:
            continue
        wall = local.time()
        if at <= wall and (until is None or wall < until):
            zones.append((name, local.date()))
    return tuple(zones)


def checkin_key(tz: str, day: date) -> str:
    """The once-a-day mark of a time zone whose check-in offers went out."""
    return f"checkin:{tz}:{day.isoformat()}"


async def _open_zones(session: AsyncSession, protocol: Protocol,
                      now: datetime) -> dict[str, date]:
    zones = checkin_zones(protocol.reminders, now)
    if not zones:
        return {}
    done = await runs.claimed(session, [checkin_key(tz, day) for tz, day in zones.items()])
    return {tz: day for tz, day in zones.items() if checkin_key(tz, day) not in done}


def _offerable(zones: dict[str, date]) -> ColumnElement[bool]:
    return and_(Patient.tz.in_(list(zones)), *receives_routine_sql(),
                Patient.baseline <= max(zones.values()))


async def checkins_due(session: AsyncSession, protocol: Protocol, now: datetime) -> bool:
    """Some zone in its check-in window has patients and is not marked done."""
    zones = await _open_zones(session, protocol, now)  # most of the week: no look-up at all
    return bool(zones) and bool((await session.execute(
        select(exists().where(_offerable(zones))))).scalar())


async def offer_checkins(session: AsyncSession, protocol: Protocol, now: datetime) -> int:
    """Offer the weekly check-in to every patient of a zone in its window; the number queued.

    A patient in the middle of a questionnaire is offered later in the window, once free; a
    zone is marked done once everybody in it was offered.
    """
    zones = await _open_zones(session, protocol, now)
    if not zones:
        return 0
    patients = (await session.execute(select(Patient).where(_offerable(zones))
                                      .order_by(Patient.id))).scalars().all()
    busy = set((await session.execute(select(ConversationState.patient_id).where(
        ConversationState.patient_id.in_([p.id for p in patients]),
        ConversationState.ended_at.is_(None))))
        .scalars()) if patients else set()
    offer = Reply("questionnaire.checkin_offer", choices=(
        # A Telegram button; the SMS text itself says what to reply (症状 / REPORT).
        Choice("questionnaire.button_start", "report:start", ""),))
    offers = []
    waiting = {p.tz for p in patients if p.id in busy}
    for patient in patients:
        day = zones[patient.tz]
        if patient.id in busy or patient.baseline > day:
            continue
        recipient = outgoing.Recipient.patient(patient)
        if recipient is not None:
            offers.append(outgoing.plan(recipient, offer, now=now,
                                        key=f"checkin:{patient.id}:{day.isoformat()}"))
    queued = len(await outgoing.queue_many(session, offers, now=now, protocol=protocol))
    # Zones with nobody enrolled are not marked: looking again costs one index look-up.
    marks = {checkin_key(p.tz, zones[p.tz]) for p in patients if p.tz not in waiting}
    for key in sorted(marks):
        await runs.claim(session, key, now)
    return queued

"""48 simulated weeks through `scheduler.tick.run_tick`: every visit notice is planned once, at
09:00 local, never in quiet hours; moves, missed windows, late visits; phase notices when staff
record W24 and W48."""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from engage.clock import SimulatedClock
from messages.channel import OutgoingMessage, SendResult
from scheduler.dispatcher import OutboxSender
from scheduler.ratelimit import ChannelRate
from scheduler.tick import run_tick
from storage.audit import Actor
from storage.db import Database
from storage.models import Alert, OutboundMessage, Patient, Visit
from study import visits
from tests.study import visits_support as support
from trial.protocol import Protocol

SH, NY = "Asia/Shanghai", "America/New_York"
START = datetime(2026, 1, 31, tzinfo=UTC)
END = datetime(2027, 2, 5, tzinfo=UTC)
NURSE = Actor.staff(1)
Action = Callable[[datetime], Awaitable[None]]
# Text a notice must never contain, whatever the protocol's list says.
UNBLINDING = ["placebo", "安慰剂", "switch", "切换", "换成", "换药", "active drug", "真药"]


def local(day: date, at: time, tz: str) -> datetime:
    return datetime.combine(day, at, tzinfo=ZoneInfo(tz)).astimezone(UTC)


class Recorder:
    """A channel that accepts everything and remembers when each outbox row went out."""

    def __init__(self, name: str, clock: SimulatedClock) -> None:
        self.name = name
        self.clock = clock
        self.sent: dict[int, datetime] = {}

    async def send(self, message: OutgoingMessage) -> SendResult:
        assert message.message_id not in self.sent, "sent twice"
        self.sent[message.message_id] = self.clock.now()
        return SendResult(provider_id=f"{self.name}-{message.message_id}")


def instants(extra: set[datetime]) -> list[datetime]:
    """Every tick: 09:00 (notice time) in both zones every day, and 22:30 (quiet hours) in
    each zone every other day.

    22:30 in Beijing is mid-morning in New York and the other way round, so a quiet-hours tick
    of one zone is also a late tick for the other.
    """
    moments = set(extra)
    day = START.date()
    while day <= END.date():
        moments |= {local(day, time(9, 0), SH), local(day, time(9, 0), NY)}
        moments.add(local(day, time(22, 30), (SH, NY)[day.toordinal() % 2]))
        day += timedelta(days=1)
    return sorted(m for m in moments if START <= m < END)


def holding_doses(protocol: Protocol) -> Protocol:
    """The protocol with hold_dose on every visit but screening."""
    table = [v.model_copy(update={"hold_dose": v.name != "SCR"}) for v in protocol.visits.table]
    return protocol.model_copy(update={"visits": protocol.visits.model_copy(
        update={"table": table, "usual_time": protocol.visits.usual_time or time(9)})})


@pytest.mark.slow
@pytest.mark.timeout(900)  # a hang guard: about 5x the run's time on a loaded 2-core machine
async def test_48_weeks_of_visit_and_phase_notices(sqlite_db: Database,
                                                   protocol: Protocol) -> None:
    db = sqlite_db
    # The bundled protocol holds no dose (the real protocol is not public): simulate a site
    # protocol that holds the dose before every trough visit, so its rule is exercised.
    protocol = holding_doses(protocol)
    clock = SimulatedClock(START)
    await support.site(db, START, "BJ01", SH)
    await support.site(db, START, "NY01", NY)
    a = await support.patient(db, protocol, START, "BJ01-001", baseline=date(2026, 3, 2),
                              phone="+8613800000001")
    b = await support.patient(db, protocol, START, "NY01-001", site_id="NY01",
                              baseline=date(2026, 2, 10), language="en", telegram_id=5001)
    silent = [await support.patient(db, protocol, START, f"BJ01-00{n}",
                                    baseline=date(2026, 3, 2), phone=f"+861380000000{n}",
                                    **fields)
              for n, fields in ((2, {"status": "paused"}), (3, {"opted_out": True}),
                                (4, {"status": "withdrawn"}))]

    async def act(fn: Callable[..., Awaitable[object]], subject: str, *args: object,
                  **kwargs: object) -> None:
        async with db.write() as session:
            patient = await visits.find_patient(session, subject)
            await fn(session, protocol, patient, *args, now=clock.now(), actor=NURSE, **kwargs)

    def move(subject: str, name: str, day: date, reason: str) -> Action:
        return lambda now: act(visits.move_visit, subject, name, day, reason=reason)

    def done(subject: str, name: str, day: date | None = None) -> Action:
        return lambda now: act(visits.mark_done, subject, name, done_date=day)

    # B's W16 (target Tue 06-02) is moved right after its 3-day notice was planned on 05-30,
    # before the dispatcher got to it: that notice must never go out.
    after_tick = {local(date(2026, 5, 30), time(9), NY): [
        move("NY01-001", "W16", date(2026, 6, 5), "patient asked")]}
    actions: dict[datetime, list[Action]] = {
        # A's W12 (target Mon 05-25) is moved two weeks ahead of its notices.
        local(date(2026, 5, 10), time(12), SH): [move("BJ01-001", "W12", date(2026, 5, 27),
                                                      "clinic holiday")],
        # A's W36 (target 11-09, window 11-02..11-16) is moved outside its window.
        local(date(2026, 10, 20), time(12), SH): [move("BJ01-001", "W36", date(2026, 11, 18),
                                                       "patient abroad")],
        # A's W20 (window 07-13..07-27) is missed, then recorded late with its real date.
        local(date(2026, 7, 30), time(12), SH): [done("BJ01-001", "W20", date(2026, 7, 29))],
    }
    for patient, tz in ((a, SH), (b, NY)):
        async with db.read() as session:
            rows = await visits.patient_visits(session, patient.id)
        for row in rows:
            if row.name == "SCR" or (patient is a and row.name == "W20"):
                continue
            day = {("BJ01-001", "W12"): date(2026, 5, 27), ("NY01-001", "W16"): date(2026, 6, 5),
                   ("BJ01-001", "W36"): date(2026, 11, 18)}.get(
                (patient.subject_id, row.name), row.scheduled_date)
            actions.setdefault(local(day, time(15), tz), []).append(
                done(patient.subject_id, row.name))

    # B's dose reminders (08:00 New York) around the moved visit: old and new visit day.
    dose_ticks = {local(date(2026, 6, d), time(8), NY) for d in range(1, 7)}
    channels = {name: Recorder(name, clock) for name in ("telegram", "sms")}
    rates = {name: ChannelRate(0.0) for name in channels}  # no real-time waits
    dispatcher = OutboxSender(db, protocol, channels, clock, worker_id="sim", rates=rates)
    for moment in instants(set(actions) | set(after_tick) | dose_ticks):
        clock.set(moment)
        for action in actions.get(moment, []):
            await action(moment)
        await run_tick(db, protocol, clock.now())
        for action in after_tick.get(moment, []):
            await action(moment)
        await dispatcher.run_once()
    sent = channels["telegram"].sent | channels["sms"].sent

    messages = await support.visit_messages(db)
    async with db.read() as session:
        stored = {v.id: v for v in (await session.execute(select(Visit))).scalars()}
        alerts = (await session.execute(select(Alert))).scalars().all()
        dose_rows = (await session.execute(select(OutboundMessage).where(
            OutboundMessage.dedupe_key.like("dose:reminder:%")))).scalars().all()

    # Nothing for the paused, opted-out or withdrawn patients.
    assert not [m for m in messages if m.patient_id in {p.id for p in silent}]
    # Each key once (unique), each planned exactly at its instant: visit notices at 09:00
    # local, phase notices when staff record the visit (15:00 here), never in quiet hours.
    assert len({m.dedupe_key for m in messages}) == len(messages)
    for m in messages:
        tz = SH if m.patient_id == a.id else NY
        at = time(9, 0) if m.dedupe_key.startswith("visit:") else time(15, 0)
        assert m.due_at.astimezone(ZoneInfo(tz)).time() == at, m.dedupe_key
        assert m.created_at == m.due_at, m.dedupe_key  # planned at its instant, not before
        if m.status != "cancelled":  # sent at once, once, outside quiet hours
            assert (m.status, sent[m.id]) == ("sent", m.due_at), m.dedupe_key
            assert not protocol.quiet_hours.contains(sent[m.id].astimezone(ZoneInfo(tz)).time())
        else:
            assert m.id not in sent

    def notices_of(patient: Patient) -> dict[str, list[tuple[str, date, str]]]:
        tz = SH if patient is a else NY
        result: dict[str, list[tuple[str, date, str]]] = {}
        for m in messages:
            if m.patient_id == patient.id and m.dedupe_key.startswith("visit:"):
                _, visit_id, revision, days = m.dedupe_key.split(":")
                name = stored[int(visit_id)].name
                result.setdefault(name, []).append(
                    (f"{revision}:{days}", m.due_at.astimezone(ZoneInfo(tz)).date(), m.status))
        return result

    a_notices, b_notices = notices_of(a), notices_of(b)
    # 13 notified visits x 2 notices, SCR never.
    assert sorted(a_notices) == sorted(b_notices) == sorted(
        v.name for v in protocol.visits.table if v.notify)
    assert a_notices["W12"] == [("r1:d3", date(2026, 5, 24), "sent"),
                                ("r1:d1", date(2026, 5, 26), "sent")]
    assert b_notices["W16"] == [("r0:d3", date(2026, 5, 30), "cancelled"),
                                ("r1:d3", date(2026, 6, 2), "sent"),
                                ("r1:d1", date(2026, 6, 4), "sent")]
    assert a_notices["W36"] == [("r1:d3", date(2026, 11, 15), "sent"),
                                ("r1:d1", date(2026, 11, 17), "sent")]
    # Across the March DST change in New York: W4 on Tue 03-10, both notices at 09:00 local.
    assert b_notices["W4"] == [("r0:d3", date(2026, 3, 7), "sent"),
                               ("r0:d1", date(2026, 3, 9), "sent")]
    assert [m.due_at for m in messages if m.patient_id == b.id and m.dedupe_key.startswith(
        f"visit:{next(v.id for v in stored.values() if v.patient_id == b.id and v.name == 'W4')}:")
    ] == [datetime(2026, 3, 7, 14, tzinfo=UTC), datetime(2026, 3, 9, 13, tzinfo=UTC)]
    for name, sent_notices in (a_notices | {f"b{k}": v for k, v in b_notices.items()}).items():
        if name not in ("W16", "bW16"):
            assert [r[0][-2:] for r in sent_notices] == ["d3", "d1"], name

    # The missed window reached the coordinator as one routine alert; the late visit keeps its
    # real date and is flagged, as is the visit moved outside its window.
    by_name = {(v.patient_id, v.name): v for v in stored.values()}
    missed = [al for al in alerts if al.kind == "missed_visit"]
    assert [(al.tier, al.status, al.pages) for al in missed] == [("routine", "open", 0)] * len(
        missed)
    [a_missed] = [al for al in missed if al.patient_id == a.id]
    assert a_missed.opened_at == local(date(2026, 7, 28), time(9), SH)  # first tick after
    assert not [al for al in missed if al.patient_id in (b.id, silent[2].id)]  # withdrawn
    # Paused or opted-out patients are still in the study: their unrecorded visits count.
    assert {al.patient_id for al in missed} == {a.id, silent[0].id, silent[1].id}
    w20, w36 = by_name[(a.id, "W20")], by_name[(a.id, "W36")]
    assert (w20.status, w20.done_date, w20.out_of_window) == ("done", date(2026, 7, 29), True)
    assert (w36.status, w36.done_date, w36.out_of_window) == ("done", date(2026, 11, 18), True)
    assert all(v.status == "done" for v in stored.values()
               if v.patient_id in (a.id, b.id) and v.name != "SCR")

    # Phase change when W24 is recorded and the end-of-study notice when W48 is: once each,
    # neutral (issue 16: not by the calendar).
    phase = [(m.patient_id, m.dedupe_key.rsplit(":", 1)[1], m.due_at, m.body)
             for m in messages if m.dedupe_key.startswith("phase:")]
    assert [p[:3] for p in phase] == [
        (b.id, "open_label", local(date(2026, 7, 28), time(15), NY)),
        (a.id, "open_label", local(date(2026, 8, 17), time(15), SH)),
        (b.id, "end", local(date(2027, 1, 12), time(15), NY)),
        (a.id, "end", local(date(2027, 2, 1), time(15), SH)),
    ]
    forbidden = [w.lower() for w in [*protocol.sms.forbidden_words, *UNBLINDING]]
    for m in messages:
        assert not [w for w in forbidden if w in m.body.lower()], m.body
    assert "研究用药" in phase[1][3]
    assert "study medication" in phase[0][3]

    # The visit-day dose reminder carries the hold instruction on the (new) visit day only.
    reminders: Counter[tuple[date, str]] = Counter()
    for m in dose_rows:
        if m.patient_id == b.id:
            day = m.due_at.astimezone(ZoneInfo(NY)).date()
            reminders[(day, m.template_id)] += 1
    assert reminders[(date(2026, 6, 5), "dose.reminder_hold_for_visit")] == 1
    # Not on the day the visit was first planned (it was moved), nor any day around it.
    assert not [day for (day, template) in reminders
                if template == "dose.reminder_hold_for_visit" and day != date(2026, 6, 5)]
    assert reminders[(date(2026, 6, 2), "dose.reminder")] == 1
    assert reminders[(date(2026, 6, 3), "dose.reminder")] == 1

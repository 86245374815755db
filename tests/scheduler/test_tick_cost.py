"""A tick costs what is due, not who is enrolled: counted in SQL statements and query plans,
not in seconds. 50 and then 500 patients, each with a week of dose history and their visits."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import event, func, select

from scheduler.tick import run_tick
from storage.db import Database
from storage.models import DoseRecord, OutboundMessage, Patient, Site, TickRun, Visit
from trial import schedule
from trial.protocol import Protocol
from trial.visits import plan_visits

BASELINE = date(2026, 3, 2)  # a Monday
# A Tuesday evening in UTC: before every zone's dose time and before the sites' digest (08:00
# Shanghai); no check-in day anywhere; no visit notice, window or phase change near.
QUIET = datetime(2026, 3, 10, 23, 0, tzinfo=UTC)
ZONES = ("Asia/Shanghai", "Asia/Urumqi", "America/New_York")
DOSE_TIME = "20:00"
# Tables that grow with enrolment: a statement of a tick may look rows up in them, never walk them.
GROWING = ("patients", "doses", "visits", "outbound_messages", "audit_log", "alerts",
           "conversations", "tick_runs")


@contextmanager
def recorded(db: Database) -> Iterator[list[tuple[str, Any]]]:
    """Every statement the engine sends while inside (an executemany counts once)."""
    statements: list[tuple[str, Any]] = []

    def note(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any,
             _many: bool) -> None:
        statements.append((statement, parameters))

    event.listen(db.engine.sync_engine, "before_cursor_execute", note)
    try:
        yield statements
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", note)


async def enrol(db: Database, protocol: Protocol, first: int, count: int) -> None:
    """Patients in mid-week-2 state: past doses closed, today's planned, visits on the calendar
    (screening and baseline done)."""
    async with db.write() as session:
        if await session.get(Site, "S01") is None:
            session.add(Site(id="S01", name="One", tz="Asia/Shanghai", created_at=QUIET))
            await session.flush()
        patients = []
        for n in range(first, first + count):
            tz = ZONES[n % 3]
            today = schedule.local_date(QUIET, tz)
            following = schedule.dose_times(protocol.reminders, today + timedelta(days=1),
                                             DOSE_TIME, tz)
            patients.append(Patient(
                subject_id=f"C-{n:04d}", site_id="S01", baseline=BASELINE, dose_time=DOSE_TIME,
                tz=tz, language=("zh", "en")[n % 2], telegram_id=50_000 + n, status="active",
                opted_out=False, telegram_reachable=True, sms_reachable=True,
                planned_through=today, plan_next_at=following.due_at - timedelta(days=1),
                created_at=QUIET))
        session.add_all(patients)
        await session.flush()
        for patient in patients:
            today = schedule.local_date(QUIET, patient.tz)
            day = BASELINE
            while day <= today:
                times = schedule.dose_times(protocol.reminders, day, DOSE_TIME, patient.tz)
                open_ = day == today
                session.add(DoseRecord(
                    patient_id=patient.id, local_date=day, due_at=times.due_at,
                    follow_up_at=times.follow_up_at, cutoff_at=times.cutoff_at,
                    state="scheduled" if open_ else "taken",
                    answered_at=None if open_ else times.due_at, snoozes=0,
                    next_action_at=times.due_at if open_ else None))
                day += timedelta(days=1)
            for plan in plan_visits(protocol.visits, BASELINE):
                done = plan.target <= BASELINE
                session.add(Visit(patient_id=patient.id, name=plan.name, target_date=plan.target,
                                  window_start=plan.window_start, window_end=plan.window_end,
                                  scheduled_date=plan.target, revision=0,
                                  status="done" if done else "planned",
                                  done_date=plan.target if done else None,
                                  out_of_window=False))


async def quiet_tick(db: Database, protocol: Protocol) -> list[tuple[str, Any]]:
    with recorded(db) as statements:
        report = await run_tick(db, protocol, QUIET)
    assert set(report.counts.values()) == {0}, report.counts  # truly nothing due
    return statements


async def test_a_tick_with_nothing_due_costs_the_same_for_50_and_500_patients(
        db: Database, protocol: Protocol) -> None:
    await enrol(db, protocol, 0, 50)
    async with db.read() as session:  # the set-up is what it claims: the next due is later
        next_dose = (await session.execute(select(func.min(DoseRecord.next_action_at)))).scalar()
        next_plan = (await session.execute(select(func.min(Patient.plan_next_at)))).scalar()
    # SQLite hands back MIN() of a UTC column as text.
    moments = [m if isinstance(m, datetime) else datetime.fromisoformat(str(m)).replace(
        tzinfo=UTC) for m in (next_dose, next_plan)]
    assert min(moments) > QUIET
    small = await quiet_tick(db, protocol)
    await enrol(db, protocol, 50, 450)
    large = await quiet_tick(db, protocol)
    assert len(small) == len(large)
    assert len(large) <= 4  # one read snapshot: the conditions, the digest's sites
    async with db.read() as session:
        assert (await session.execute(select(func.count()).select_from(OutboundMessage)
                                      )).scalar() == 0


async def test_no_statement_of_a_quiet_tick_walks_a_growing_table(sqlite_db: Database,
                                                                  protocol: Protocol) -> None:
    await enrol(sqlite_db, protocol, 0, 500)
    statements = await quiet_tick(sqlite_db, protocol)
    async with sqlite_db.engine.connect() as connection:
        for statement, parameters in statements:
            if not statement.lstrip().upper().startswith("SELECT"):
                continue
            plan = (await connection.exec_driver_sql(
                "EXPLAIN QUERY PLAN " + statement, parameters)).all()
            walks = [row[-1] for row in plan if any(
                row[-1].startswith(f"SCAN {table}") for table in GROWING)]
            assert not walks, f"{walks} in {statement}"


async def test_a_due_tick_sends_everyone_with_the_same_statements_for_50_and_500(
        db: Database, protocol: Protocol) -> None:
    """At Shanghai's dose time every Shanghai patient is reminded: bulk writes, so the number
    of statements does not grow with the number reminded either."""
    due = datetime(2026, 3, 11, 12, 0, tzinfo=UTC)  # 20:00 in Shanghai
    async with db.write() as session:  # the site's digest of the day went out this morning
        session.add(TickRun(key="digest:S01:2026-03-11", at=due - timedelta(hours=12)))
    counts = []
    for first, count in ((0, 50), (50, 450)):
        await enrol(db, protocol, first, count)  # the first group was handled by the first tick
        with recorded(db) as statements:
            await run_tick(db, protocol, due)
        counts.append(len(statements))
        async with db.read() as session:
            reminded = (await session.execute(
                select(func.count()).select_from(OutboundMessage).join(Patient).where(
                    OutboundMessage.dedupe_key.like("dose:reminder:%"),
                    Patient.subject_id >= f"C-{first:04d}",
                    Patient.subject_id < f"C-{first + count:04d}"))).scalar()
        assert reminded == sum(ZONES[n % 3] == "Asia/Shanghai"
                               for n in range(first, first + count))
    assert counts[0] == counts[1]

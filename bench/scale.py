"""Scale: one tick's planning time (`scheduler.tick.run_tick`, every step) with 10,000 and
100,000 enrolled patients, all due, and with 1,000 due among each; against the bare writes a
tick must make for the due patients (the same rows, inserted and updated with executemany in
one transaction).

    .venv/bin/python bench/scale.py [--small 10000] [--large 100000] [--few 1000]

The study is seeded in bulk in the steady state: every patient has today's dose row and 14
visits, enrolment spread over the last 150 days (nobody reaches a phase change today); the due
patients' dose is at the tick's instant (08:30 in Shanghai), everybody else's at 20:00. Today's
digests are marked sent (08:00) so the tick does what a tick at 08:30 does every day. One
unmeasured tick first pays the one-time imports (matplotlib) and catalogue loading.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import common
from sqlalchemy import Table, insert, update
from sqlalchemy.sql import bindparam

from scheduler.tick import STEPS
from storage.db import Database
from storage.models import (
    AuditEntry,
    DoseRecord,
    OutboundMessage,
    Patient,
    Site,
    Staff,
    TickRun,
    Visit,
)
from trial import schedule
from trial.protocol import Protocol, load_protocol

NOW = datetime(2026, 3, 3, 0, 30, tzinfo=UTC)  # 08:30 in Shanghai, a Tuesday
DUE_TIME, OTHER_TIME = "08:30", "20:00"
SITES = 6


async def seed(path: Path, protocol: Protocol, patients: int) -> None:
    """The steady state with nobody due (see the module's docstring)."""
    db = await common.sqlite_database(path.parent, path.name)
    today = common.local_date(NOW)
    await common.bulk(db, Site, [{"id": common.Seeded.site(s), "name": f"H{s}", "tz": common.TZ,
                                  "phone": None, "created_at": NOW} for s in range(1, SITES + 1)])
    await common.bulk(db, Staff, [
        {"id": s, "site_id": common.Seeded.site(s), "role": "coordinator", "name": f"C{s}",
         "telegram_id": common.COORDINATOR_CHAT + s, "phone": None, "language": "en",
         "active": True, "telegram_reachable": True, "created_at": NOW}
        for s in range(1, SITES + 1)])
    await common.bulk(db, TickRun, [{"key": f"digest:{common.Seeded.site(s)}:{today}",
                                     "at": NOW - timedelta(minutes=30)}
                                    for s in range(1, SITES + 1)])
    times = schedule.dose_times(protocol.reminders, today, OTHER_TIME, common.TZ)
    tomorrow = schedule.dose_times(protocol.reminders, today + timedelta(days=1), OTHER_TIME,
                                   common.TZ)
    step = 20_000
    for first in range(1, patients + 1, step):
        people, doses, visits = [], [], []
        for n in range(first, min(patients, first + step - 1) + 1):
            baseline = today - timedelta(days=1 + n % 150)
            people.append({
                "id": n, "subject_id": f"P{n:06d}", "site_id": common.Seeded.site(1 + n % SITES),
                "baseline": baseline, "dose_time": OTHER_TIME, "tz": common.TZ,
                "language": "zh" if n % 2 else "en", "phone": None,
                "telegram_id": common.Seeded.chat(n), "status": "active", "opted_out": False,
                "telegram_reachable": True, "sms_reachable": True, "planned_through": today,
                "plan_next_at": tomorrow.due_at - timedelta(days=1), "created_at": NOW})
            doses.append(common.dose_row(n, times, "scheduled"))
            visits += common.visit_rows(protocol, n, baseline, today)
        await common.bulk(db, Patient, people)
        await common.bulk(db, DoseRecord, doses)
        await common.bulk(db, Visit, visits)
    await db.dispose()


async def make_due(url: str, protocol: Protocol, due: int) -> None:
    """Move the first `due` patients' dose (and their next planning) to the tick's instant."""
    db = Database(url)
    today = common.local_date(NOW)
    times = schedule.dose_times(protocol.reminders, today, DUE_TIME, common.TZ)
    async with db.write() as session:
        await session.execute(update(Patient).where(Patient.id <= due).values(
            dose_time=DUE_TIME, plan_next_at=times.due_at))
        await session.execute(update(DoseRecord).where(DoseRecord.patient_id <= due).values(
            due_at=times.due_at, follow_up_at=times.follow_up_at, cutoff_at=times.cutoff_at,
            next_action_at=times.due_at))
    await db.dispose()


async def tick(url: str, protocol: Protocol) -> tuple[float, dict[str, tuple[float, int]]]:
    """One planning pass as `run_tick` makes it, each step timed."""
    db = Database(url)
    steps: dict[str, tuple[float, int]] = {}
    started = time.perf_counter()
    for tick_step in STEPS:
        name, step = tick_step.name, tick_step.run
        began = time.perf_counter()
        count = await step(db, protocol, NOW)
        steps[name] = (time.perf_counter() - began, count)
    total = time.perf_counter() - started
    await db.dispose()
    return total, steps


async def bare_writes(url: str, protocol: Protocol, due: int) -> float:
    """The floor: the rows a tick writes for `due` patients, in one transaction."""
    db = Database(url)
    today = common.local_date(NOW)
    times = schedule.dose_times(protocol.reminders, today, DUE_TIME, common.TZ)
    later = schedule.dose_times(protocol.reminders, today + timedelta(days=1), DUE_TIME,
                                common.TZ)
    body = "x" * 120
    started = time.perf_counter()
    async with db.write() as session:
        patients: Table = Patient.__table__  # type: ignore[assignment]
        await session.execute(
            update(patients).where(patients.c.id == bindparam("b_id"))
            .values(planned_through=bindparam("b_day"), plan_next_at=bindparam("b_next")),
            [{"b_id": n, "b_day": later.local_date, "b_next": later.due_at}
             for n in range(1, due + 1)])
        await session.execute(insert(cast(Table, DoseRecord.__table__)),
                              [common.dose_row(n, later, "scheduled") for n in range(1, due + 1)])
        doses: Table = DoseRecord.__table__  # type: ignore[assignment]
        await session.execute(
            update(doses).where(doses.c.patient_id == bindparam("b_id"),
                                doses.c.local_date == today)
            .values(state="reminded", reminded_at=NOW, next_action_at=times.follow_up_at),
            [{"b_id": n} for n in range(1, due + 1)])
        await session.execute(insert(cast(Table, OutboundMessage.__table__)), [_outbox(n, body)
                                                                  for n in range(1, due + 1)])
        await session.execute(insert(cast(Table, AuditEntry.__table__)), [
            {"at": NOW, "actor_kind": "system", "actor_id": "planner", "action": action,
             "entity": "doses", "entity_id": str(n), "field": None, "old_value": None,
             "new_value": "x" * 40, "reason": None}
            for n in range(1, due + 1) for action in ("create", "update", "update")])
    elapsed = time.perf_counter() - started
    await db.dispose()
    return elapsed


def _outbox(n: int, body: str) -> dict[str, Any]:
    return {"dedupe_key": f"bare:{n}", "patient_id": n, "staff_id": None, "channel": "telegram",
            "address": str(common.Seeded.chat(n)), "template_id": "dose.reminder",
            "template_version": "1", "language": "en", "body": body,
            "choices": [{"label": "Taken", "action": f"dose:taken:{n}", "sms_word": "TAKEN"}],
            "image": None, "lane": "routine", "due_at": NOW, "status": "queued", "attempts": 0,
            "created_at": NOW, "dose_id": None}


async def case(directory: Path, base: Path, protocol: Protocol, enrolled: int,
               due: int) -> float:
    path = directory / f"tick-{enrolled}-{due}.db"
    copy = directory / f"bare-{enrolled}-{due}.db"
    for target in (path, copy):
        shutil.copy(base, target)
        await make_due(f"sqlite+aiosqlite:///{target}", protocol, due)
    total, steps = await tick(f"sqlite+aiosqlite:///{path}", protocol)
    floor = await bare_writes(f"sqlite+aiosqlite:///{copy}", protocol, due)
    detail = ", ".join(f"{name} {seconds:.2f}s/{count}" for name, (seconds, count)
                       in steps.items() if seconds >= 0.01 or count)
    print(f"   {enrolled:>7,} enrolled, {due:>7,} due: tick {total:6.2f} s; bare writes "
          f"{floor:5.2f} s (ratio {total / floor:5.1f}); steps: {detail}", flush=True)
    for target in (path, copy):
        common.remove_database(target)
    return total


async def warm_up(directory: Path, protocol: Protocol) -> None:
    """One unmeasured tick: imports (matplotlib for the digest) and catalogues load once."""
    base = directory / "warm.db"
    await seed(base, protocol, 200)
    await make_due(f"sqlite+aiosqlite:///{base}", protocol, 20)
    await tick(f"sqlite+aiosqlite:///{base}", protocol)
    common.remove_database(base)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--large", type=int, default=100_000)
    parser.add_argument("--few", type=int, default=1_000)
    args = parser.parse_args()
    common.header("scale: one tick's planning time (SQLite)")
    protocol = load_protocol()
    with tempfile.TemporaryDirectory(prefix="engage-bench-") as tmp:
        directory = Path(tmp)
        results: dict[tuple[int, int], float] = {}
        await warm_up(directory, protocol)
        for enrolled in (args.small, args.large):
            base = directory / f"base-{enrolled}.db"
            started = time.perf_counter()
            await seed(base, protocol, enrolled)
            print(f"   seeded {enrolled:,} patients (+ doses, 14 visits each) in "
                  f"{time.perf_counter() - started:.1f} s", flush=True)
            for due in (args.few, enrolled):
                results[(enrolled, due)] = await case(directory, base, protocol, enrolled, due)
    large = results[(args.large, args.large)]
    common.goal(f"tick < 0.5 s with {args.large:,} due", large < 0.5, f"{large:.2f} s")
    growth = results[(args.large, args.few)] / results[(args.small, args.few)]
    common.goal(f"grows with due, not enrolled ({args.few:,} due: {args.large:,} vs "
                f"{args.small:,} enrolled)", growth < 1.5,
                f"x{growth:.2f} for x{args.large / args.small:.0f} enrolled")


if __name__ == "__main__":
    asyncio.run(main())

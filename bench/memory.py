"""Memory: peak resident memory (VmHWM) of `engage run`, idle, with 10,000 patients enrolled,
against the same command on an empty study.

    .venv/bin/python bench/memory.py [--patients 10000] [--settle 20]

`engage run` is the real command in its own process, with Telegram (polling) and SMS configured
against the fake providers (bench/fakes.py) and a SQLite database seeded in bulk in the steady
state: today's dose answered, visits ahead, today's digests and check-ins done, so its first
tick (at start) reads everything and has nothing to send. VmHWM is read from
/proc/<pid>/status after it has been healthy for `--settle` seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

import common
from sqlalchemy import update

from engage.clock import SystemClock
from storage.models import DoseRecord, OutboundMessage, Patient, TickRun
from trial.protocol import load_protocol

GOAL_MB = 200

# `engage run` reads the wall clock (SystemClock): so does the study it is measured on.
WALL_CLOCK = SystemClock()


async def seed(path: Path, patients: int, now: datetime) -> None:
    protocol = load_protocol()
    db = await common.sqlite_database(path.parent, path.name)
    if patients:
        await common.seed(db, protocol, patients=patients, now=now, baseline_days=10,
                          planned=True, visits=True)
        today = common.local_date(now)
        async with db.write() as session:
            await session.execute(update(Patient).values(plan_next_at=now + timedelta(days=1)))
            await session.execute(update(DoseRecord).values(
                state="taken", reminded_at=now, answered_at=now, closed_at=now,
                next_action_at=None))
        # Whatever today is, its weekly check-in offers and digests are behind us.
        await common.bulk(db, OutboundMessage, [
            {"dedupe_key": f"checkin:{n}:{today}", "patient_id": n, "channel": "telegram",
             "address": str(common.Seeded.chat(n)), "template_id": "questionnaire.checkin_offer",
             "template_version": "1", "language": "en", "body": "Check-in", "choices": [],
             "lane": "routine", "due_at": now, "status": "sent", "attempts": 1,
             "created_at": now, "sent_at": now} for n in range(1, patients + 1)])
    await common.bulk(db, TickRun, [{"key": f"digest:{common.Seeded.site(s)}:{day}", "at": now}
                                    for s in range(1, 7)
                                    for day in (common.local_date(now),
                                                common.local_date(now) - timedelta(days=1))])
    await db.dispose()


def environment(directory: Path, fakes: common.Fakes, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENGAGE_")}
    env.update({
        "ENGAGE_DATABASE_URL": f"sqlite+aiosqlite:///{directory / 'engage.db'}",
        "ENGAGE_TELEGRAM_TOKEN": common.TOKEN, "ENGAGE_TELEGRAM_API_URL": fakes.telegram,
        "ENGAGE_TWILIO_ACCOUNT_SID": common.ACCOUNT,
        "ENGAGE_TWILIO_AUTH_TOKEN": common.AUTH_TOKEN,
        "ENGAGE_TWILIO_MESSAGING_SERVICE_SID": common.SERVICE,
        "ENGAGE_TWILIO_API_URL": fakes.twilio, "ENGAGE_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "ENGAGE_HTTP_PORT": str(port), "PYTHONPATH": str(common.ROOT)})
    return env


def measure(directory: Path, patients: int, settle: float) -> tuple[int, int, float]:
    """(VmHWM kB, VmRSS kB, seconds to healthy) of `engage run` on a study of `patients`."""
    # The real clock: `engage run` reads it, so the seeded study is steady as of now.
    asyncio.run(seed(directory / "engage.db", patients, WALL_CLOCK.now()))
    port = common.free_port()
    with common.fakes() as fakes:
        started = time.monotonic()
        with common.served([common.PYTHON, "-m", "engage.cli", "run", "--log-level",
                            "WARNING"], port, cwd=directory,
                           env=environment(directory, fakes, port), within=60) as process:
            healthy = time.monotonic() - started
            time.sleep(settle)
            status = common.vm_status(process.pid)
    common.remove_database(directory / "engage.db")
    return status["VmHWM"], status["VmRSS"], healthy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--patients", type=int, default=10_000)
    parser.add_argument("--settle", type=float, default=20.0)
    args = parser.parse_args()
    common.header("memory: `engage run` idle")
    with tempfile.TemporaryDirectory(prefix="engage-bench-") as tmp:
        results = {}
        for patients in (0, args.patients):
            hwm, rss, healthy = measure(Path(tmp), patients, args.settle)
            results[patients] = hwm
            print(f"   {patients:>6,} patients: VmHWM {hwm / 1024:6.1f} MB, VmRSS "
                  f"{rss / 1024:6.1f} MB (healthy after {healthy:.1f} s, measured "
                  f"{args.settle:.0f} s later)", flush=True)
    peak = results[args.patients] / 1024
    print(f"   ratio {args.patients:,} patients / empty study: "
          f"{results[args.patients] / results[0]:.2f}")
    common.goal(f"peak RSS < {GOAL_MB} MB with {args.patients:,} patients", peak < GOAL_MB,
                f"{peak:.1f} MB")


if __name__ == "__main__":
    main()

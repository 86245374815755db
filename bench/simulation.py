"""Simulation: the whole 48-week SIRIUS trial for 146 patients (the acceptance simulation of the
dose issue, tests/e2e/test_simulation_doses.py), driven through every instant that matters on a
SQLite file; against the same simulation for 14 patients in the same run (the per-patient cost
ratio shows that the time grows with patients, not faster).

    .venv/bin/python bench/simulation.py [--patients 146] [--weeks 48]

Goal (issue 3): the 146-patient, 48-week simulation runs in under a minute.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
from pathlib import Path

import common  # noqa: F401  (puts the project on sys.path)

from fakes.population import run_trial
from storage.db import Database
from storage.migrate import upgrade
from trial.protocol import load_protocol

GOAL_SECONDS = 60.0


async def simulate(patients: int, weeks: int) -> float:
    """Seconds to simulate and check `patients` over `weeks` on a fresh SQLite file."""
    folder = Path(tempfile.mkdtemp(prefix="engage-sim-"))
    try:
        db = Database(f"sqlite+aiosqlite:///{folder / 'sim.db'}")
        await upgrade(db.engine)
        started = time.perf_counter()
        await run_trial(db, load_protocol(), patients, weeks)
        elapsed = time.perf_counter() - started
        await db.dispose()
        return elapsed
    finally:
        shutil.rmtree(folder, ignore_errors=True)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--patients", type=int, default=146)
    parser.add_argument("--weeks", type=int, default=48)
    args = parser.parse_args()
    small = await simulate(14, args.weeks)
    large = await simulate(args.patients, args.weeks)
    ratio = (large / args.patients) / (small / 14)
    print(f"baseline: 14 patients x {args.weeks} weeks: {small:.1f} s "
          f"({small / 14 * 1000:.0f} ms a patient)")
    print(f"simulation: {args.patients} patients x {args.weeks} weeks: {large:.1f} s "
          f"({large / args.patients * 1000:.0f} ms a patient; per-patient ratio {ratio:.2f})")
    verdict = "PASS" if large < GOAL_SECONDS else "MISS"
    print(f"goal: under {GOAL_SECONDS:.0f} s -> {verdict}")


if __name__ == "__main__":
    asyncio.run(main())

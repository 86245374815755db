"""Acceptance 1: 146 scripted patients, 6 sites, 3 time zones, 48 weeks, driven through
scheduler.tick.run_tick from event to event; every dose state and the three adherence figures
equal what the script says, computed here by hand."""

from __future__ import annotations

import pytest

from fakes.population import run_trial
from storage.db import Database
from trial.protocol import Protocol


@pytest.mark.slow
@pytest.mark.timeout(900)  # a hang guard: about 5x the run's time on a loaded 2-core machine
async def test_simulation_146_patients_48_weeks_sqlite(sqlite_db: Database,
                                                        protocol: Protocol) -> None:
    # How long it takes is measured by bench/simulation.py (house rule: no timed tests).
    await run_trial(sqlite_db, protocol, 146, 48)


@pytest.mark.postgres
@pytest.mark.timeout(600)  # a hang guard: about 20 s idle, 10x that under load is still no hang
async def test_simulation_slice_postgres(pg_db: Database, protocol: Protocol) -> None:
    await run_trial(pg_db, protocol, 14, 17)


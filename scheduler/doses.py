"""Tick step of daily doses: plan the rows that are due to exist, then move due doses on."""

from __future__ import annotations

from datetime import datetime

from scheduler.tick import Step
from storage.db import Database
from study import doses
from trial.protocol import Protocol


async def plan_doses(db: Database, protocol: Protocol, now: datetime) -> int:
    """Create due dose rows; send due reminders, follow-ups and snooze reminders; close doses at
    their cut-off. Batches are separate transactions so a long catch-up never holds the lock."""
    total = 0
    more = True
    while more:
        async with db.write() as session:
            created, more = await doses.plan_patients(session, protocol, now)
        total += created
    more = True
    while more:
        async with db.write() as session:
            changed, more = await doses.advance_doses(session, protocol, now)
        total += changed
    return total


STEPS: list[tuple[str, Step]] = [("doses", plan_doses)]

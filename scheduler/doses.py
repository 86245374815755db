"""Tick step of daily doses: plan the rows that are due to exist, then move due doses on."""

from __future__ import annotations

from datetime import datetime

from scheduler.steps import NOW, TickStep
from storage.db import Database
from study import dose_planner
from trial.protocol import Protocol


# A patient to plan or a dose to move on. Isolated: the step writes doses, patients' planning
# instants, outbox rows and audit entries, none of which another step's condition reads.
async def plan_doses(db: Database, protocol: Protocol, now: datetime) -> int:
    """Create due dose rows; send due reminders, follow-ups and snooze reminders; close doses at
    their cut-off. Each batch is one transaction, so a long catch-up never holds the lock long
    and a crash loses at most the batch in hand (it is planned again by the next pass)."""
    total = 0
    more = True
    while more:
        async with db.write() as session:
            created, more_patients = await dose_planner.plan_patients(session, protocol, now)
            changed, more_doses = await dose_planner.advance_doses(session, protocol, now)
        total += created + changed
        more = more_patients or more_doses
    return total


STEPS = (TickStep("doses", plan_doses, when=dose_planner.due_condition(NOW), isolated=True),)

"""One scheduler pass as of an instant: every planning step, listed here in the order they run
(`scheduler.steps` is the framework: a step's condition, probe and the pass).

The order matters: doses first (a reminder on time), then visits, then the digest (it reads what
those just wrote), then the alert work (escalation, SAE reminders, questionnaire time-outs,
check-ins).
"""

from __future__ import annotations

from datetime import datetime

from scheduler import digest, doses, escalation, visits
from scheduler.steps import TickReport, TickStep, run_steps
from storage.db import Database
from trial.protocol import Protocol

__all__ = ["STEPS", "TickReport", "run_tick"]

STEPS: tuple[TickStep, ...] = (*doses.STEPS, *visits.STEPS, *digest.STEPS, *escalation.STEPS)


async def run_tick(db: Database, protocol: Protocol, now: datetime) -> TickReport:
    """Run every planning step that has something due, once, as of `now`."""
    return await run_steps(db, protocol, now, STEPS)

"""Tick steps of visits: notices due, windows closed (phase and end-of-study notices go when a
visit is recorded, or the final one missed: study.visits.queue_phase_notice)."""

from __future__ import annotations

from datetime import datetime

from scheduler.steps import NOW, TickStep, once_a_day
from storage.db import Database
from study import visits
from trial.protocol import Protocol


async def visit_notices(db: Database, protocol: Protocol, now: datetime) -> int:
    """Queue visit notices whose instant has come."""
    async with db.write() as session:
        return await visits.plan_notices(session, protocol, now)


async def missed_visits(db: Database, protocol: Protocol, now: datetime) -> int:
    """Mark visits whose window closed unvisited as missed and open their routine alerts."""
    async with db.write() as session:
        return await visits.detect_missed(session, protocol, now)


STEPS = (
    TickStep("visit_notices", visit_notices, when=visits.notices_may_be_due(NOW)),
    TickStep("missed_visits", missed_visits, when=once_a_day(visits.missed_may_be_due)),
)

"""One scheduler pass as of an instant: every step plans what is due into the database.

Steps are idempotent (unique keys), so running a pass twice, or on two workers, is harmless.
Each capability adds its step to STEPS.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime

from storage.db import Database
from trial.protocol import Protocol

Step = Callable[[Database, Protocol, datetime], Awaitable[int]]


@dataclass
class TickReport:
    """How many rows each step planned or changed."""

    at: datetime
    counts: dict[str, int] = field(default_factory=dict)


def _steps() -> list[tuple[str, Step]]:
    # Imported here so each capability's module stays independent of the others.
    steps: list[tuple[str, Step]] = []
    from scheduler import doses
    steps += doses.STEPS
    from scheduler import visits
    steps += visits.STEPS
    from scheduler import digest
    steps += digest.STEPS
    from scheduler import escalation
    steps += escalation.STEPS
    return steps


async def run_tick(db: Database, protocol: Protocol, now: datetime) -> TickReport:
    """Run every planning step once as of `now`."""
    report = TickReport(at=now)
    for name, step in _steps():
        report.counts[name] = await step(db, protocol, now)
    return report

"""One scheduler pass as of an instant: every step plans what is due into the database.

Steps are idempotent (unique keys), so running a pass twice, or on two workers, is harmless.
Each capability adds its step to STEPS.

A pass costs what is due, not what is enrolled: a step may register a probe (`due_when`), an
indexed query that says whether it has anything to do. The pass asks the probes in one read
session and opens a write transaction (SQLite: the database's one write lock) only for the
steps that have work. A probe is asked just before its step, on a fresh snapshot whenever an
earlier step of the pass wrote something, so work created by an earlier step is seen at once.
Called directly, a step does its whole job: probes are the pass's shortcut, not the step's rule.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from storage.db import Database
from trial.protocol import Protocol

Step = Callable[[Database, Protocol, datetime], Awaitable[int]]
# Whether a step has anything due as of `now` (True when unsure: a probe may over-approximate,
# never under-approximate, or the step would skip work that is due).
Probe = Callable[[AsyncSession, Protocol, datetime], Awaitable[bool]]
_PROBES: dict[Step, Probe] = {}


def due_when(probe: Probe) -> Callable[[Step], Step]:
    """Register a step's probe: the pass runs the step only when the probe says it has work."""
    def register(step: Step) -> Step:
        _PROBES[step] = probe
        return step
    return register


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
    """Run every planning step that has something due, once, as of `now`."""
    report = TickReport(at=now)
    async with db.read() as probes:
        for name, step in _steps():
            probe = _PROBES.get(step)
            if probe is not None and not await probe(probes, protocol, now):
                report.counts[name] = 0
                continue
            # End the read snapshot first: the next probe must see what this step writes.
            await probes.rollback()
            report.counts[name] = await step(db, protocol, now)
    return report

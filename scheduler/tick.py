"""One scheduler pass as of an instant: every step plans what is due into the database.

Steps are idempotent (unique keys), so running a pass twice, or on two workers, is harmless.
Each capability adds its step to STEPS.

A pass costs what is due, not what is enrolled. A step may register what "something is due"
means for it: an indexed SQL condition (`due_when`), or, when that needs a look in Python, an
async probe (`due_if`). A condition compares with the pass's instant through `NOW` (a bound
parameter), so it is built once and the pass's statement is reused, not rebuilt every pass.
The pass evaluates every step's condition in one SELECT on a read snapshot, and opens a write
transaction (on SQLite the database's one write lock) only for the steps that have work. After
a step has run, the conditions of the steps after it are evaluated again on a fresh snapshot,
so work an earlier step creates is seen in the same pass. Called directly, a step does its
whole job: conditions are the pass's shortcut, not the step's rule.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import BindParameter, ColumnElement, Select, bindparam, case, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage import audit
from storage.db import Database
from storage.types import UTCDateTime
from trial.protocol import Protocol

# The pass's instant, bound when the pass runs its conditions.
NOW: BindParameter[datetime] = bindparam("tick_now", type_=UTCDateTime())

Step = Callable[[Database, Protocol, datetime], Awaitable[int]]
# Whether a step has anything due as of `now`. It may say yes when unsure (the step then finds
# nothing), never no when something is due (the step would not run).
Condition = Callable[[Protocol, datetime], "ColumnElement[bool] | bool"]
Probe = Callable[[AsyncSession, Protocol, datetime], Awaitable[bool]]
_CONDITIONS: dict[Step, Condition] = {}
_PROBES: dict[Step, Probe] = {}
# Steps whose writes never make another step due (they touch no table another step's condition
# reads): after them, the conditions need not be asked again.
_ISOLATED: set[Step] = set()


def due_when(condition: Condition | ColumnElement[bool], *,
             isolated: bool = False) -> Callable[[Step], Step]:
    """Register a step's SQL condition: the pass runs the step only when it holds. A condition
    built once (comparing with `NOW`) is given as it is; one that needs the protocol or the
    date, as a function of them. `isolated`: the step's writes never make another step due."""
    if isinstance(condition, ColumnElement):
        fixed = condition

        def condition(protocol: Protocol, now: datetime) -> ColumnElement[bool]:
            return fixed

    def register(step: Step) -> Step:
        _CONDITIONS[step] = condition
        if isolated:
            _ISOLATED.add(step)
        return step
    return register


def once_a_day(condition: Condition) -> Condition:
    """A condition that depends on the instant only through its UTC date, built once a day
    (per protocol) rather than every pass."""
    built: dict[tuple[int, date], tuple[Protocol, ColumnElement[bool] | bool]] = {}

    def daily(protocol: Protocol, now: datetime) -> ColumnElement[bool] | bool:
        key = (id(protocol), now.astimezone(UTC).date())
        hit = built.get(key)
        if hit is None or hit[0] is not protocol:
            if len(built) >= 8:
                built.clear()
            hit = built[key] = (protocol, condition(protocol, now))
        return hit[1]

    return daily


def due_if(probe: Probe) -> Callable[[Step], Step]:
    """Register a step's async probe: the pass runs the step only when it says yes."""
    def register(step: Step) -> Step:
        _PROBES[step] = probe
        return step
    return register


async def _evaluate(session: AsyncSession, protocol: Protocol, now: datetime,
                    steps: list[tuple[str, Step]]) -> dict[str, bool]:
    """Every SQL condition of these steps, in one statement."""
    conditions = {name: _CONDITIONS[step](protocol, now) for name, step in steps
                  if step in _CONDITIONS}
    answers = {name: c for name, c in conditions.items() if isinstance(c, bool)}
    queries = {name: c for name, c in conditions.items() if not isinstance(c, bool)}
    if queries:
        row = (await session.execute(_statement(tuple(queries.values())),
                                     {NOW.key: now})).one()
        answers.update((name, bool(value)) for name, value in zip(queries, row, strict=True))
    return answers


# The last statement built, with the conditions it holds: passes reuse it while every condition
# is the same object (they are built once, or once a day).
_LAST: list[tuple[tuple[ColumnElement[bool], ...], Select[Any]]] = []


def _statement(conditions: tuple[ColumnElement[bool], ...]) -> Select[Any]:
    if _LAST and len(_LAST[0][0]) == len(conditions) and all(
            a is b for a, b in zip(_LAST[0][0], conditions, strict=True)):
        return _LAST[0][1]
    statement = select(*(case((c, True), else_=False).label(f"c{n}")
                         for n, c in enumerate(conditions)))
    _LAST[:] = [(conditions, statement)]
    return statement


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
    steps = _steps()
    async with db.read() as probes:
        due: dict[str, bool] | None = None
        for index, (name, step) in enumerate(steps):
            if due is None:
                due = await _evaluate(probes, protocol, now, steps[index:])
                # The probes too, on the same snapshot: an isolated step's writes cannot change
                # their answers, so a pass whose work is all isolated reads once.
                for later, check in steps[index:]:
                    probe = _PROBES.get(check)
                    if probe is not None and due.get(later, True):
                        due[later] = await probe(probes, protocol, now)
            if not due.get(name, True):
                report.counts[name] = 0
                continue
            # End the read snapshot: the next conditions must see what this step writes.
            await probes.rollback()
            with audit.cause(reason=f"scheduled step {name}"):
                report.counts[name] = await step(db, protocol, now)
            if step not in _ISOLATED:
                due = None
    return report

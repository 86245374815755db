"""The tick's step framework: a `TickStep` value (name, run, when, probe, isolated) and the pass
that runs a list of them (`run_steps`). The list itself is `scheduler/tick.py`.

Steps are idempotent (unique keys), so running a pass twice, or on two workers, is harmless.

A pass costs what is due, not what is enrolled. A step may say what "something is due" means
for it: an indexed SQL condition (`when`), or, when that needs a look in Python, an async probe
(`probe`). A condition compares with the pass's instant through `NOW` (a bound parameter), so it
is built once and the pass's statement is reused, not rebuilt every pass. The pass evaluates
every step's condition in one SELECT on a read snapshot, and opens a write transaction (on
SQLite the database's one write lock) only for the steps that have work. After a step has run,
the conditions of the steps after it are evaluated again on a fresh snapshot, so work an earlier
step creates is seen in the same pass. Called directly, a step does its whole job: conditions
are the pass's shortcut, not the step's rule.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
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

Run = Callable[[Database, Protocol, datetime], Awaitable[int]]
# Whether a step has anything due as of `now`. It may say yes when unsure (the step then finds
# nothing), never no when something is due (the step would not run).
Condition = Callable[[Protocol, datetime], "ColumnElement[bool] | bool"]
Probe = Callable[[AsyncSession, Protocol, datetime], Awaitable[bool]]


@dataclass(frozen=True)
class TickStep:
    """One planning step of the tick: `run` does its whole job as of an instant and returns how
    many rows it planned or changed. `when`: its SQL condition (one built once, comparing with
    `NOW`, or a function of the protocol and the instant); `probe`: an async look instead; with
    neither it runs every pass. `isolated`: its writes never make another step due (they touch
    no table another step's condition reads), so the conditions need not be asked again."""

    name: str
    run: Run
    when: Condition | ColumnElement[bool] | None = None
    probe: Probe | None = None
    isolated: bool = False

    def condition(self, protocol: Protocol, now: datetime) -> ColumnElement[bool] | bool | None:
        """The step's condition as of `now`, or None when it has none."""
        if self.when is None or isinstance(self.when, ColumnElement):
            return self.when
        return self.when(protocol, now)


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


async def _evaluate(session: AsyncSession, protocol: Protocol, now: datetime,
                    steps: Sequence[TickStep]) -> dict[str, bool]:
    """Every SQL condition of these steps, in one statement."""
    conditions = {step.name: c for step in steps
                  if (c := step.condition(protocol, now)) is not None}
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


async def run_steps(db: Database, protocol: Protocol, now: datetime,
                    steps: Sequence[TickStep]) -> TickReport:
    """Run every step of `steps` that has something due, once, in order, as of `now`."""
    report = TickReport(at=now)
    async with db.read() as probes:
        due: dict[str, bool] | None = None
        for index, step in enumerate(steps):
            if due is None:
                due = await _evaluate(probes, protocol, now, steps[index:])
                # The probes too, on the same snapshot: an isolated step's writes cannot change
                # their answers, so a pass whose work is all isolated reads once.
                for later in steps[index:]:
                    if later.probe is not None and due.get(later.name, True):
                        due[later.name] = await later.probe(probes, protocol, now)
            if not due.get(step.name, True):
                report.counts[step.name] = 0
                continue
            # End the read snapshot: the next conditions must see what this step writes.
            await probes.rollback()
            with audit.cause(reason=f"scheduled step {step.name}"):
                report.counts[step.name] = await step.run(db, protocol, now)
            if not step.isolated:
                due = None
    return report

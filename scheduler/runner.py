"""The in-process scheduler of `engage run`: a planning tick every minute and the dispatcher loop.

APScheduler 3.11 is only the ticker: the database decides what is due, so a missed or coalesced
tick loses nothing (the next one plans it). Ticks never overlap (`max_instances=1`), late ones
are merged into one (`coalesce`) and run if no later than the misfire grace.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from scheduler.dispatcher import OutboxSender
from scheduler.supervision import Supervised
from scheduler.tick import TickReport, run_tick
from storage.db import Database
from trial.clock import Clock, SystemClock
from trial.protocol import Protocol

log = logging.getLogger(__name__)

TickFunction = Callable[[Database, Protocol, datetime], Awaitable[TickReport]]


class Runner:
    """Starts and stops the tick job and the dispatcher together."""

    def __init__(self, db: Database, protocol: Protocol, dispatcher: OutboxSender, clock: Clock,
                 *, tick_seconds: float = 60.0, misfire_grace_seconds: int = 30,
                 tick: TickFunction = run_tick) -> None:
        self.db = db
        self.protocol = protocol
        self.dispatcher = dispatcher
        self.clock = clock
        self.tick_seconds = tick_seconds
        self.misfire_grace_seconds = misfire_grace_seconds
        self._tick_function = tick
        self._scheduler: AsyncIOScheduler | None = None
        self._stop = asyncio.Event()
        self._dispatching: asyncio.Task[None] | None = None
        self.dispatching: Supervised | None = None
        self.restart_delay = 1.0  # the first wait before a dead dispatcher loop is restarted
        self._ticking = asyncio.Lock()
        self.last_tick: TickReport | None = None
        self.last_tick_error: str | None = None

    @property
    def running(self) -> bool:
        """Whether the scheduler and the dispatcher loop are both alive (for /healthz)."""
        return self.scheduler_running and self.dispatcher_running

    @property
    def scheduler_running(self) -> bool:
        """Whether the tick job is scheduled."""
        return self._scheduler is not None and self._scheduler.running

    @property
    def dispatcher_running(self) -> bool:
        """Whether the dispatcher loop runs (not dead, not waiting to be restarted)."""
        return (self.dispatching is not None and self.dispatching.running
                and self._dispatching is not None and not self._dispatching.done())

    async def start(self) -> None:
        """Start ticking (the first tick at once) and dispatching."""
        if self._scheduler is not None:
            raise RuntimeError("runner already started")
        self._stop.clear()
        scheduler = AsyncIOScheduler(timezone=UTC, event_loop=asyncio.get_running_loop())
        # APScheduler keeps its own wall-clock timeline; the tick itself reads `self.clock`.
        scheduler.add_job(self._tick, IntervalTrigger(seconds=self.tick_seconds, timezone=UTC),
                          id="tick", coalesce=True, max_instances=1,
                          misfire_grace_time=self.misfire_grace_seconds,
                          next_run_time=SystemClock().now())
        scheduler.start()
        self._scheduler = scheduler
        # A dispatcher loop that dies is logged with its traceback and restarted.
        self.dispatching = Supervised("dispatcher", lambda: self.dispatcher.run(self._stop),
                                      self._stop, first_delay=self.restart_delay)
        self._dispatching = self.dispatching.start()

    async def stop(self) -> None:
        """Stop gracefully: no new tick, the running tick and in-flight sends finish, the rest
        of the outbox stays queued for the next start."""
        if self._scheduler is None:
            return
        self._scheduler.pause()
        async with self._ticking:  # let a running tick commit
            self._scheduler.shutdown(wait=False)
        self._scheduler = None
        self._stop.set()
        if self._dispatching is not None:
            await self._dispatching
            self._dispatching = None

    async def tick_now(self) -> TickReport | None:
        """Run one tick at once (e.g. after a restart); the same as the scheduled job."""
        return await self._tick()

    async def _tick(self) -> TickReport | None:
        async with self._ticking:
            try:
                report = await self._tick_function(self.db, self.protocol, self.clock.now())
            except Exception as exc:
                # The next tick plans whatever this one missed; keep ticking.
                log.exception("tick failed")
                self.last_tick_error = f"{type(exc).__name__}: {exc}"
                return None
            self.last_tick, self.last_tick_error = report, None
            if any(report.counts.values()):
                self.dispatcher.wake()
            return report

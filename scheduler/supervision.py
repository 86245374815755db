"""Background tasks that never die silently: a task that fails is logged with its traceback and
started again after a backoff (1 s doubling to 30 s), for as long as the process runs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


class Supervised:
    """Runs `run()` until `stop` is set, restarting it whenever it raises or returns early;
    `running` is False while it waits to be restarted (for /healthz)."""

    def __init__(self, name: str, run: Callable[[], Awaitable[None]], stop: asyncio.Event, *,
                 first_delay: float = 1.0, max_delay: float = 30.0) -> None:
        self.name = name
        self._run = run
        self._stop = stop
        self.first_delay = first_delay
        self.max_delay = max_delay
        self.running = False
        self.restarts = 0
        self.task: asyncio.Task[None] | None = None

    def start(self) -> asyncio.Task[None]:
        """Start supervising in a task of its own."""
        self.running = True  # from now: the task is scheduled, not waiting to be restarted
        self.task = asyncio.create_task(self._supervise(), name=self.name)
        return self.task

    async def _supervise(self) -> None:
        delay = self.first_delay
        while not self._stop.is_set():
            self.running = True
            try:
                await self._run()
                if self._stop.is_set():
                    return
                log.error("%s stopped by itself; restarting in %.1f s", self.name, delay)
            except Exception:
                log.exception("%s died; restarting in %.1f s", self.name, delay)
            finally:
                self.running = False
            self.restarts += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=delay)
            delay = min(delay * 2, self.max_delay)

"""Rate limits the dispatcher keeps by itself, so providers never have to refuse it.

Each channel has a bucket (Telegram: 30 messages/s per bot; SMS: per sender) that hands out one
slot every 1/rate seconds, safety messages first, and a gate per address (Telegram: 1 message/s
per chat), safety messages first there too: an emergency reply to a patient whose routine replies
are queued for the same number goes next, not after them. Slots are spaced from the moment each
is granted, so no one-second window ever holds more than the rate. A provider's `retry_after`
holds a gate or the whole bucket.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

Monotonic = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

# Forget idle per-address gates beyond this many (a fan-out touches every chat once a day).
MAX_IDLE_GATES = 20_000


@dataclass(frozen=True)
class ChannelRate:
    """Messages per second for a whole channel and for one address on it (0: unlimited)."""

    per_channel: float
    per_address: float = 0.0


class Bucket:
    """One slot every `1/rate` seconds, urgent waiters first; `hold` pauses it."""

    def __init__(self, rate: float, *, monotonic: Monotonic = time.monotonic,
                 sleep: Sleep = asyncio.sleep) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self._monotonic = monotonic
        self._sleep = sleep
        self._next = 0.0  # monotonic instant of the next free slot
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self._runner: asyncio.Task[None] | None = None

    def backlog(self, *, urgent: bool = False) -> float:
        """Seconds a new waiter would wait for its slot (an urgent one: behind urgent ones)."""
        now = self._monotonic()
        ahead = sum(1 for w in self._waiters if w[0] == 0) if urgent else len(self._waiters)
        return max(0.0, self._next - now) + ahead * self.interval

    def hold(self, seconds: float) -> None:
        """Grant nothing for `seconds` (a provider said so)."""
        self._next = max(self._next, self._monotonic() + seconds)

    async def acquire(self, *, urgent: bool = False) -> None:
        """Wait for a slot."""
        if not self._waiters and self._monotonic() >= self._next:
            self._grant()
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (0 if urgent else 1, next(self._order), future))
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._run())
        await future

    def _grant(self) -> None:
        self._next = max(self._next, self._monotonic()) + self.interval

    async def _run(self) -> None:
        while self._waiters:
            wait = self._next - self._monotonic()
            if wait > 0:
                await self._sleep(wait)
                continue  # a hold may have moved the next slot meanwhile
            _, _, future = heapq.heappop(self._waiters)
            if future.done():  # its waiter was cancelled
                continue
            self._grant()
            future.set_result(None)


class _Gate:
    """The next instant one address may receive a message, and a queue to take turns at it:
    one holder at a time, urgent waiters before routine ones (in arrival order within each)."""

    __slots__ = ("_busy", "_order", "_waiters", "not_before")

    def __init__(self) -> None:
        self.not_before = 0.0
        self._busy = False
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def locked(self) -> bool:
        return self._busy or bool(self._waiters)

    async def enter(self, *, urgent: bool) -> None:
        if not self.locked():
            self._busy = True
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (0 if urgent else 1, next(self._order), future))
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.leave()  # the turn was handed over as this waiter was cancelled
            raise

    def leave(self) -> None:
        """Hand the turn to the first waiter still waiting, or free the gate."""
        while self._waiters:
            _, _, future = heapq.heappop(self._waiters)
            if not future.done():
                future.set_result(None)
                return
        self._busy = False


class RateLimiter:
    """Per-channel buckets and per-address gates for every rate-limited channel."""

    def __init__(self, rates: Mapping[str, ChannelRate], *, monotonic: Monotonic = time.monotonic,
                 sleep: Sleep = asyncio.sleep) -> None:
        self._rates = dict(rates)
        self._monotonic = monotonic
        self._sleep = sleep
        self._buckets = {name: Bucket(rate.per_channel, monotonic=monotonic, sleep=sleep)
                         for name, rate in self._rates.items()}
        self._gates: dict[tuple[str, str], _Gate] = {}

    def _gate(self, channel: str, address: str) -> _Gate:
        key = (channel, address)
        gate = self._gates.get(key)
        if gate is None:
            if len(self._gates) >= MAX_IDLE_GATES:
                self._forget_idle()
            gate = self._gates[key] = _Gate()
        return gate

    def _forget_idle(self) -> None:
        now = self._monotonic()
        for key, gate in list(self._gates.items()):
            if not gate.locked() and gate.not_before <= now:
                del self._gates[key]

    def delay(self, channel: str, address: str, *, urgent: bool = False) -> float:
        """Roughly how long a message to `address` would wait now (holds and queues); an urgent
        one waits for holds and urgent messages only, never for the routine queue."""
        bucket = self._buckets.get(channel)
        if bucket is None:
            return 0.0
        gate = self._gates.get((channel, address))
        held = max(0.0, gate.not_before - self._monotonic()) if gate else 0.0
        return held + bucket.backlog(urgent=urgent)

    def hold(self, channel: str, seconds: float, address: str | None = None) -> None:
        """Send nothing to `address` (or, without one, on the whole channel) for `seconds`."""
        if address is not None:
            gate = self._gate(channel, address)
            gate.not_before = max(gate.not_before, self._monotonic() + seconds)
        elif channel in self._buckets:
            self._buckets[channel].hold(seconds)

    async def acquire(self, channel: str, address: str, *, urgent: bool = False) -> None:
        """Wait until a message to `address` may go: its gate first, then the channel's slot."""
        bucket = self._buckets.get(channel)
        gate = self._gates.get((channel, address))
        if bucket is None and gate is None:
            return
        gate = self._gate(channel, address)
        await gate.enter(urgent=urgent)
        try:
            while (wait := gate.not_before - self._monotonic()) > 0:
                await self._sleep(wait)
            if bucket is not None:
                await bucket.acquire(urgent=urgent)
            rate = self._rates.get(channel)
            spacing = 1.0 / rate.per_address if rate and rate.per_address > 0 else 0.0
            gate.not_before = max(gate.not_before, self._monotonic() + spacing)
        finally:
            gate.leave()

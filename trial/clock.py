"""Time as a parameter: the running system reads a Clock; tests and the demo move one by hand.

The bottom layer holds the clock so every layer can take one; this is the only module that
reads the wall clock (`SystemClock`): everything else is given `now` or a `Clock`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """Something that tells the current UTC instant."""

    def now(self) -> datetime: ...


class SystemClock:
    """The wall clock, in UTC."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class SimulatedClock:
    """A clock that only moves when told to (tests, the demo, `engage tick --at`)."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("a simulated clock needs an aware start time")
        self._now = start.astimezone(UTC)

    def now(self) -> datetime:
        return self._now

    def set(self, moment: datetime) -> None:
        """Jump to an instant (never backwards)."""
        moment = moment.astimezone(UTC)
        if moment < self._now:
            raise ValueError("a simulated clock does not go backwards")
        self._now = moment

    def advance(self, delta: timedelta) -> datetime:
        """Move forward and return the new instant."""
        self.set(self._now + delta)
        return self._now

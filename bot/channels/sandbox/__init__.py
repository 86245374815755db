"""The sandbox channel: deliveries kept in memory (and optionally handed to a callback), for the
demo and development; registered under the real channel names so routing is unchanged."""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable

from messages.channel import OutgoingMessage, SendError, SendResult

Listener = Callable[[str, OutgoingMessage], Awaitable[None] | None]


class SandboxChannel:
    """A channel that delivers to a list instead of a provider."""

    def __init__(self, name: str, *, on_send: Listener | None = None) -> None:
        self.name = name
        self.on_send = on_send
        self.deliveries: list[OutgoingMessage] = []
        self.failures: dict[str, SendError] = {}
        self._ids = itertools.count(1)

    def fail(self, address: str, error: SendError) -> None:
        """Make every send to an address fail with this error (a blocked chat, an opt-out)."""
        self.failures[address] = error

    def to(self, address: str) -> list[OutgoingMessage]:
        """What was delivered to one address."""
        return [m for m in self.deliveries if m.address == address]

    async def send(self, message: OutgoingMessage) -> SendResult:
        """Record the message (or raise the canned failure)."""
        if message.address in self.failures:
            raise self.failures[message.address]
        self.deliveries.append(message)
        if self.on_send is not None:
            result = self.on_send(self.name, message)
            if result is not None:
                await result
        return SendResult(provider_id=f"sandbox-{self.name}-{next(self._ids)}",
                          status="delivered")

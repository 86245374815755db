"""A fake provider served from an event loop of its own thread, for tests that run the CLI in
process (`engage.cli.main` runs its own `asyncio.run`, so the fake cannot share its loop)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from fakes.loopback import Fake

F = TypeVar("F", bound=Fake)


@contextmanager
def serving(fake: F, *, within: float = 10.0) -> Iterator[F]:
    """`fake` started on a loop in a daemon thread, stopped afterwards (its records stay)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="fake-provider", daemon=True)
    thread.start()

    async def call(work: Awaitable[object]) -> None:
        await work

    try:
        asyncio.run_coroutine_threadsafe(call(fake.start()), loop).result(within)
        yield fake
    finally:
        try:
            asyncio.run_coroutine_threadsafe(call(fake.stop()), loop).result(within)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(within)
            loop.close()

"""Serving an aiohttp app on a free port of 127.0.0.1: how every fake provider runs; and the
pytest fixture of a fake, started for a test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol, TypeVar

import pytest
from aiohttp import web


class Fake(Protocol):
    async def start(self) -> str: ...

    async def stop(self) -> None: ...


F = TypeVar("F", bound=Fake)


class LoopbackServer:
    """Starts an app on 127.0.0.1 (port chosen by the OS) and stops it."""

    def __init__(self) -> None:
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    async def serve(self, app: web.Application, *, backlog: int = 128) -> str:
        """Start serving `app`; return its base URL. `backlog`: connections waiting to be
        accepted (a benchmark's burst needs more than a test's)."""
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, backlog=backlog)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base_url = f"http://127.0.0.1:{port}"
        return self.base_url

    async def close(self) -> None:
        """Stop serving (idempotent)."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


def fixture(name: str, make: Callable[[], F]) -> Any:
    """A pytest fixture `name` giving a fake started (and stopping it after the test)."""

    @pytest.fixture(name=name)
    async def started() -> AsyncIterator[F]:
        api = make()
        await api.start()
        try:
            yield api
        finally:
            await api.stop()

    return started

"""/healthz tells the truth: 503 naming Telegram while getUpdates fails for longer than
ENGAGE_TELEGRAM_STALE_SECONDS, 200 again once it answers; a background task that dies is logged
with its traceback and restarted."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import aiohttp
import pytest

from engage.config import Settings
from engage.runtime import Runtime
from fakes.servers import TOKEN
from fakes.telegram_api import FakeTelegramAPI
from scheduler.supervision import Supervised


async def health_until(port: int, status: int, within: float) -> tuple[float, dict[str, object]]:
    """Poll /healthz until it answers `status`; (seconds it took, the body)."""
    start = time.monotonic()
    async with aiohttp.ClientSession() as http:
        while True:
            async with http.get(f"http://127.0.0.1:{port}/healthz") as response:
                body = dict(await response.json())
                if response.status == status:
                    return time.monotonic() - start, body
            assert time.monotonic() - start < within, f"/healthz never {status}: {body}"
            await asyncio.sleep(0.05)


async def test_healthz_is_503_naming_telegram_while_getupdates_fails_and_200_after(
        tmp_path: Path, fake_telegram: FakeTelegramAPI) -> None:
    settings = Settings(_env_file=None,  # type: ignore[call-arg]
                        database_url=f"sqlite+aiosqlite:///{tmp_path / 'e.db'}",
                        telegram_token=TOKEN, telegram_api_url=fake_telegram.base_url,
                        telegram_stale_seconds=1.0, http_port=0)
    runtime = Runtime(settings, restart_delay=0.05)
    await runtime.start()
    try:
        assert runtime.port is not None
        await health_until(runtime.port, 200, within=5)
        fake_telegram.fail_updates("html")
        took, body = await health_until(runtime.port, 503, within=5)
        assert body["failing"] == ["telegram"]
        assert body["database"] is True
        assert took < 3.5  # stale after 1 s (plus the long poll in flight, at most 1 s here)
        fake_telegram.recover_updates()
        took, body = await health_until(runtime.port, 200, within=5)
        assert body["telegram"] is True
    finally:
        await runtime.stop()


async def test_a_task_that_dies_is_logged_with_its_traceback_and_restarted(
        caplog: pytest.LogCaptureFixture) -> None:
    stop = asyncio.Event()
    runs = 0

    async def flaky() -> None:
        nonlocal runs
        runs += 1
        if runs == 1:
            raise RuntimeError("dispatcher bug")
        await stop.wait()

    task = Supervised("dispatcher", flaky, stop, first_delay=0.01)
    running = task.start()
    deadline = time.monotonic() + 3
    while not (runs == 2 and task.running):
        assert time.monotonic() < deadline, "never restarted"
        await asyncio.sleep(0.01)
    stop.set()
    await asyncio.wait_for(running, 2)
    (record,) = [r for r in caplog.records if "dispatcher died" in r.getMessage()]
    assert record.levelno == logging.ERROR
    assert record.exc_info is not None
    assert "dispatcher bug" in caplog.text
    assert task.restarts == 1

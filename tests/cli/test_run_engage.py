"""`engage run` as a real process against the fake Telegram and Twilio APIs."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sqlite3
import sys
from pathlib import Path

import aiohttp
import pytest

from fakes.servers import ACCOUNT, AUTH_TOKEN, SERVICE, TOKEN
from fakes.telegram_api import FakeTelegramAPI
from fakes.twilio_api import FakeTwilioAPI
from tests import ROOT as PROJECT_ROOT

# A hang guard, not a time limit: these start `engage run` as a process (about 11 s idle).
pytestmark = pytest.mark.timeout(600)

ROOT = PROJECT_ROOT


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def environment(tmp_path: Path, telegram: str, twilio: str, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENGAGE_")}
    env.update({
        "ENGAGE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'engage.db'}",
        "ENGAGE_TELEGRAM_TOKEN": TOKEN, "ENGAGE_TELEGRAM_API_URL": telegram,
        "ENGAGE_TWILIO_ACCOUNT_SID": ACCOUNT, "ENGAGE_TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "ENGAGE_TWILIO_MESSAGING_SERVICE_SID": SERVICE, "ENGAGE_TWILIO_API_URL": twilio,
        "ENGAGE_PUBLIC_URL": f"http://127.0.0.1:{port}", "ENGAGE_HTTP_PORT": str(port),
        "PYTHONPATH": str(ROOT),
    })
    return env


async def engage(env: dict[str, str], cwd: Path, *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "engage.cli", *args, env=env, cwd=cwd,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)


async def healthz(port: int, within: float = 20.0) -> dict[str, object]:
    deadline = asyncio.get_running_loop().time() + within
    async with aiohttp.ClientSession() as http:
        while True:
            try:
                async with http.get(f"http://127.0.0.1:{port}/healthz") as response:
                    if response.status == 200:
                        return dict(await response.json())
            except aiohttp.ClientError:
                pass
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError("engage run never became healthy")
            await asyncio.sleep(0.1)


async def test_engage_run_serves_healthz_answers_telegram_and_stops_on_sigterm(
        tmp_path: Path, fake_telegram: FakeTelegramAPI,
        fake_twilio: FakeTwilioAPI) -> None:
    port = free_port()
    env = environment(tmp_path, fake_telegram.base_url, fake_twilio.base_url, port)
    process = await engage(env, tmp_path, "run")
    try:
        health = await healthz(port)
        assert health == {"status": "ok", "database": True, "scheduler": True,
                          "dispatcher": True, "tasks": True, "telegram": True,
                          "paging": True}
        # A stranger writes: polled, stored, answered through the outbox by the dispatcher.
        update = fake_telegram.inject(fake_telegram.message_update(31337, "hello"))
        await fake_telegram.wait_confirmed(update, within=10)
        await fake_telegram.wait_for("sendMessage", within=10)
        assert fake_telegram.sent("sendMessage", 31337)
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        stdout, stderr = await asyncio.wait_for(process.communicate(), 30)
    output = (stdout + stderr).decode()
    assert process.returncode == 0, output
    assert TOKEN.split(":")[1] not in output
    assert AUTH_TOKEN not in output
    with sqlite3.connect(tmp_path / "engage.db") as db:
        states = {s for (s,) in db.execute("SELECT status FROM outbound_messages")}
        unhandled = db.execute("SELECT count(*) FROM inbound_messages WHERE handled_at IS NULL"
                               ).fetchone()[0]
    assert states <= {"sent", "delivered", "queued"}  # nothing left half-sent
    assert unhandled == 0


async def test_webhook_mode_without_a_secret_refuses_to_start(tmp_path: Path) -> None:
    port = free_port()
    env = environment(tmp_path, "http://127.0.0.1:9", "http://127.0.0.1:9", port)
    env["ENGAGE_TELEGRAM_MODE"] = "webhook"
    process = await engage(env, tmp_path, "run")
    _, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 2
    assert "ENGAGE_TELEGRAM_WEBHOOK_SECRET" in stderr.decode()


async def test_webhook_mode_registers_the_secret_and_serves_the_route(
        tmp_path: Path, fake_telegram: FakeTelegramAPI) -> None:
    from engage.config import Settings
    from engage.runtime import Runtime

    settings = Settings(_env_file=None, database_url=f"sqlite+aiosqlite:///{tmp_path / 'e.db'}",  # type: ignore[call-arg]
                        telegram_token=TOKEN, telegram_api_url=fake_telegram.base_url,
                        telegram_mode="webhook", telegram_webhook_secret="s3cret-token",
                        public_url="https://engage.example.org", http_port=0)
    runtime = Runtime(settings)
    await runtime.start()
    try:
        assert fake_telegram.webhook is not None
        assert fake_telegram.webhook["url"] == "https://engage.example.org/telegram/webhook"
        assert fake_telegram.webhook["secret_token"] == "s3cret-token"
        update = fake_telegram.message_update(77, "hello", update_id=1)
        url = f"http://127.0.0.1:{runtime.port}/telegram/webhook"
        async with aiohttp.ClientSession() as http:
            async with http.post(url, json=update) as refused:
                assert refused.status == 401
            async with http.post(url, json=update, headers={
                    "X-Telegram-Bot-Api-Secret-Token": "s3cret-token"}) as accepted:
                assert accepted.status == 200
        await fake_telegram.wait_for("sendMessage", within=10)
    finally:
        await runtime.stop()

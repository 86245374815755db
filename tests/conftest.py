"""Shared fixtures: real databases (a SQLite file and the local PostgreSQL), clocks, protocol."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiogram import Bot

from bot.channels.telegram import make_bot
from engage.clock import SimulatedClock
from fakes.servers import TOKEN, fake_telegram, fake_twilio, sms  # noqa: F401  (fixtures for all)
from fakes.telegram_api import FakeTelegramAPI
from fakes.wechat import fake_wechat  # noqa: F401  (the fake WeChat API)
from fakes.wecom import fake_wecom  # noqa: F401  (the fake WeCom API)
from storage.db import Database
from storage.migrate import upgrade
from trial.protocol import Protocol, load_protocol

PG_ADMIN_URL = os.environ.get(
    "ENGAGE_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
)
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _worker() -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


async def _pg_admin(statements: list[str]) -> None:
    import asyncpg

    dsn = PG_ADMIN_URL.replace("postgresql+asyncpg://", "postgresql://")
    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


def _pg_url(database: str) -> str:
    return PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + database


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file copied for every test (migrating once is the slow part)."""
    path = tmp_path_factory.mktemp("tpl") / "template.db"

    async def build() -> None:
        db = Database(f"sqlite+aiosqlite:///{path}")
        await upgrade(db.engine)
        await db.dispose()

    asyncio.run(build())
    return path


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    """A migrated PostgreSQL template database; unreachable PostgreSQL fails the run in CI."""
    name = f"engage_tpl_{_worker()}_{os.getpid()}"
    try:
        asyncio.run(_pg_admin([f"DROP DATABASE IF EXISTS {name} WITH (FORCE)",
                               f"CREATE DATABASE {name}"]))
    except (OSError, TimeoutError, Exception) as exc:
        if IN_CI:
            pytest.fail(f"PostgreSQL unreachable at {PG_ADMIN_URL} with CI=true: {exc!r}")
        pytest.skip(f"PostgreSQL unreachable: {exc!r}")

    async def build() -> None:
        db = Database(_pg_url(name))
        await upgrade(db.engine)
        await db.dispose()

    asyncio.run(build())
    yield name
    asyncio.run(_pg_admin([f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"]))


_counter = iter(range(1_000_000))


@pytest.fixture
def sqlite_url(sqlite_template: Path, tmp_path: Path) -> str:
    """URL of a fresh migrated SQLite file for this test."""
    path = tmp_path / "engage.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite+aiosqlite:///{path}"


@pytest.fixture
def postgres_url(pg_template: str) -> Iterator[str]:
    """URL of a fresh migrated PostgreSQL database for this test."""
    name = f"engage_t_{_worker()}_{os.getpid()}_{next(_counter)}"
    asyncio.run(_pg_admin([f"CREATE DATABASE {name} TEMPLATE {pg_template}"]))
    yield _pg_url(name)
    asyncio.run(_pg_admin([f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"]))


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest) -> str:
    """A fresh migrated database URL, once for SQLite and once for PostgreSQL."""
    if request.param == "postgres":
        request.applymarker(pytest.mark.postgres)
        return str(request.getfixturevalue("postgres_url"))
    return str(request.getfixturevalue("sqlite_url"))


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    """A Database on both backends."""
    database = Database(db_url)
    yield database
    await database.dispose()


@pytest.fixture
async def sqlite_db(sqlite_url: str) -> AsyncIterator[Database]:
    """A Database on a SQLite file only (for tests whose backend does not matter)."""
    database = Database(sqlite_url)
    yield database
    await database.dispose()


@pytest.fixture
async def pg_db(postgres_url: str) -> AsyncIterator[Database]:
    """A Database on PostgreSQL only."""
    database = Database(postgres_url)
    yield database
    await database.dispose()


@pytest.fixture(scope="session")
def protocol() -> Protocol:
    """The bundled SIRIUS protocol."""
    return load_protocol()


@pytest.fixture
def clock() -> SimulatedClock:
    """A simulated clock at a fixed Monday morning, UTC."""
    return SimulatedClock(datetime(2026, 3, 2, 0, 0, tzinfo=UTC))


@pytest.fixture
async def bot(fake_telegram: FakeTelegramAPI) -> AsyncIterator[Bot]:  # noqa: F811 (the fixture)
    """An aiogram Bot on the fake Telegram API (closed afterwards)."""
    bot = make_bot(TOKEN, fake_telegram.base_url)
    yield bot
    await bot.session.close()

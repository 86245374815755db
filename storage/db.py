"""Engines and sessions. SQLite gets WAL, a busy timeout, foreign keys and BEGIN IMMEDIATE."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import Insert, event, make_url, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from storage import sqlite_driver

BUSY_TIMEOUT_MS = 30_000


def is_sqlite(engine: AsyncEngine) -> bool:
    """Whether the engine talks to SQLite."""
    return engine.dialect.name == "sqlite"


def insert_new(session: AsyncSession, table: Any, *, unique: Sequence[str]) -> Insert:
    """INSERT ... ON CONFLICT (`unique`) DO NOTHING in the session's dialect: a row whose key
    exists already is left as it is (once-only marks, replayed webhooks, queued messages)."""
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    return insert(table).on_conflict_do_nothing(index_elements=list(unique))


def make_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """An async engine configured for safe concurrent writes on either backend."""
    if url.startswith("sqlite"):
        # sqlite3.connect's arguments as SQLAlchemy would pass them, for the one-trip driver.
        parsed = make_url(url)
        args, options = parsed.get_dialect()().create_connect_args(parsed)
        options["timeout"] = BUSY_TIMEOUT_MS / 1000
        engine = create_async_engine(url, async_creator=sqlite_driver.connector(args, options),
                                     **kwargs)
        _configure_sqlite(engine)
        return engine
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 10)
    kwargs.setdefault("pool_pre_ping", True)
    return create_async_engine(url, **kwargs)


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take over BEGIN from the driver so writes can start with BEGIN IMMEDIATE: a deferred
        # transaction that reads and then writes can lose an update or fail with SQLITE_BUSY.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "IMMEDIATE")
        conn.exec_driver_sql(f"BEGIN {mode}")


class Database:
    """One engine and its session factories: `write()` for units of work, `read()` for queries."""

    def __init__(self, url: str, **engine_kwargs: Any) -> None:
        self.url = url
        self.engine = make_engine(url, **engine_kwargs)
        self._writer = async_sessionmaker(self.engine, expire_on_commit=False)
        reader_engine = (self.engine.execution_options(sqlite_begin="DEFERRED")
                         if is_sqlite(self.engine) else self.engine)
        self._reader = async_sessionmaker(reader_engine, expire_on_commit=False)
        # SQLite: one writer at a time per event loop (see `write`).
        self._write_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary())

    @property
    def is_sqlite(self) -> bool:
        """Whether this is the embedded SQLite database."""
        return is_sqlite(self.engine)

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """A unit of work: committed on success, rolled back on any exception."""
        if not self.is_sqlite:
            async with self._writer() as session, session.begin():
                yield session
            return
        # SQLite has one writer: concurrent BEGIN IMMEDIATEs of this process would wait in
        # SQLite's busy handler, which sleeps in steps of up to 100 ms (inbound webhooks at
        # 100/s had a p99 of 1.4 s). Queueing here hands the lock over at once; other processes
        # still meet the busy timeout. Bounded like it: TimeoutError is an OSError.
        loop = asyncio.get_running_loop()
        lock = self._write_locks.get(loop)
        if lock is None:
            lock = self._write_locks[loop] = asyncio.Lock()
        async with asyncio.timeout(BUSY_TIMEOUT_MS / 1000):
            await lock.acquire()
        try:
            async with self._writer() as session, session.begin():
                yield session
        finally:
            lock.release()

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """A read-only session (never commits)."""
        # Closing (not rolling back) ends the transaction and keeps loaded objects readable.
        async with self._reader() as session:
            yield session

    async def ping(self) -> bool:
        """Whether the database answers."""
        try:
            async with self.read() as session:
                await session.execute(text("SELECT 1"))
        except Exception:
            return False
        return True

    async def dispose(self) -> None:
        """Close every pooled connection."""
        await self.engine.dispose()

"""aiosqlite connections whose statements take one trip to the connection's thread, not four.

aiosqlite runs each call of a cursor on the connection's own thread and wakes the event loop
when it is done; SQLAlchemy's adapter makes four such calls a statement (open a cursor, execute,
fetch, close), ~85 us each on our 2-core machine: ~0.34 ms a statement before SQLite does any
work, on the single writer's critical path. Here a statement is executed, its rows (up to
PREFETCH) fetched and the cursor closed in one call; a larger result keeps its cursor open and
is fetched as it is read (exports stream), then closed.

It is aiosqlite's own Connection (same thread, same queue, same errors) with a cursor that
batches its calls; it relies on aiosqlite's `_execute` (queue a function for the thread), which
is why pyproject pins aiosqlite below 0.23. SQLAlchemy's documented `async_creator` hook hands
it to the engine (storage.db.make_engine).
"""

from __future__ import annotations

import sqlite3
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

import aiosqlite
from aiosqlite.context import contextmanager

# Rows read together with the statement; a larger result is read in chunks of this size.
PREFETCH = 1000

_Outcome = tuple[list[Any], Any, int, int | None, sqlite3.Cursor | None]


class OneTripCursor(aiosqlite.Cursor):
    """A cursor whose execute also fetches and closes, in one call on the thread."""

    def __init__(self, conn: OneTripConnection) -> None:
        self.iter_chunk_size = conn._iter_chunk_size
        self._conn = conn
        self._open: sqlite3.Cursor | None = None  # only while rows are left to fetch
        self._rows: deque[Any] = deque()
        self._description: Any = None
        self._rowcount = -1
        self._lastrowid: int | None = None

    # Runs on the connection's thread.
    def _run(self, method: str, *args: Any) -> _Outcome:
        cursor = self._conn._conn.cursor()
        try:
            getattr(cursor, method)(*args)
            rows = cursor.fetchmany(PREFETCH) if cursor.description else []
            outcome = (rows, cursor.description, cursor.rowcount, cursor.lastrowid)
        except BaseException:
            cursor.close()
            raise
        if len(rows) < PREFETCH:
            cursor.close()
            return (*outcome, None)
        return (*outcome, cursor)

    async def _statement(self, method: str, *args: Any) -> OneTripCursor:
        await self.close()
        rows, self._description, self._rowcount, self._lastrowid, self._open = (
            await self._conn._execute(self._run, method, *args))
        self._rows = deque(rows)
        return self

    async def execute(self, sql: str,
                      parameters: Iterable[Any] | None = None) -> OneTripCursor:
        return await self._statement("execute", sql, [] if parameters is None else parameters)

    async def executemany(self, sql: str,
                          parameters: Iterable[Iterable[Any]]) -> OneTripCursor:
        return await self._statement("executemany", sql, parameters)

    async def executescript(self, sql_script: str) -> OneTripCursor:
        return await self._statement("executescript", sql_script)

    async def _more(self, size: int | None) -> None:
        """Read more rows of an open result into the buffer (one call on the thread)."""
        cursor = self._open
        if cursor is None:
            return
        want = PREFETCH if size is None else max(size, PREFETCH)
        rows = await self._conn._execute(cursor.fetchmany, want)
        self._rows.extend(rows)
        if len(rows) < want:
            await self.close()

    async def fetchone(self) -> Any:
        if not self._rows:
            await self._more(1)
        return self._rows.popleft() if self._rows else None

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        size = self.arraysize if size is None else size
        while len(self._rows) < size and self._open is not None:
            await self._more(size)
        return [self._rows.popleft() for _ in range(min(size, len(self._rows)))]

    async def fetchall(self) -> list[Any]:
        while self._open is not None:
            await self._more(None)
        rows = list(self._rows)
        self._rows.clear()
        return rows

    async def close(self) -> None:
        cursor, self._open = self._open, None
        if cursor is not None:
            await self._conn._execute(cursor.close)

    @property
    def rowcount(self) -> int:
        return self._rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._lastrowid

    @property
    def arraysize(self) -> int:
        return 1

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        pass

    @property
    def description(self) -> Any:
        return self._description


class OneTripConnection(aiosqlite.Connection):
    """aiosqlite's connection, handing out one-trip cursors (opening one costs no trip)."""

    async def rollback(self) -> None:
        """Roll back, with no trip to the thread when no transaction is open: the pool resets
        every connection it gets back, also after a commit or a read session's own rollback
        (a trip each, on every unit of work). `in_transaction` is read between this
        connection's calls, never while one runs: each is awaited before the next is queued."""
        if self._conn.in_transaction:
            await self._execute(self._conn.rollback)

    @contextmanager
    async def cursor(self) -> OneTripCursor:  # type: ignore[override]
        return OneTripCursor(self)

    @contextmanager
    async def execute(self, sql: str,  # type: ignore[override]
                      parameters: Iterable[Any] | None = None) -> OneTripCursor:
        return await OneTripCursor(self).execute(sql, parameters)

    @contextmanager
    async def executemany(self, sql: str,  # type: ignore[override]
                          parameters: Iterable[Iterable[Any]]) -> OneTripCursor:
        return await OneTripCursor(self).executemany(sql, parameters)


def connector(args: Sequence[Any],
              kwargs: Mapping[str, Any]) -> Callable[[], Awaitable[aiosqlite.Connection]]:
    """SQLAlchemy's `async_creator`: a new connection with sqlite3.connect's arguments."""
    def connect() -> sqlite3.Connection:
        return sqlite3.connect(*args, **kwargs)

    async def create() -> aiosqlite.Connection:
        connection = OneTripConnection(connect, iter_chunk_size=64)
        connection._thread.daemon = True  # as SQLAlchemy does for aiosqlite's own
        return await connection

    return create

"""The one-trip SQLite connection (storage/sqlite_driver.py) behaves as aiosqlite's own through
SQLAlchemy: results small and large (streamed past the prefetch), row counts, errors, rollback."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select, text, update
from sqlalchemy.exc import IntegrityError

from storage import sqlite_driver
from storage.db import Database
from storage.models import AuditEntry, Site

NOW = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
MANY = sqlite_driver.PREFETCH * 2 + 345  # past the prefetch twice, and not a multiple of it


def _entries(count: int) -> list[dict[str, object]]:
    return [{"at": NOW, "actor_kind": "cli", "actor_id": "test", "action": "note",
             "entity": "sites", "entity_id": str(n), "field": None, "old_value": None,
             "new_value": f"row {n}", "reason": None} for n in range(count)]


async def test_the_engine_uses_the_one_trip_connection(sqlite_db: Database) -> None:
    async with sqlite_db.read() as session:
        connection = await session.connection()
        raw = await connection.get_raw_connection()
        assert isinstance(raw.driver_connection, sqlite_driver.OneTripConnection)


async def test_large_results_arrive_whole_and_in_order(sqlite_db: Database) -> None:
    async with sqlite_db.write() as session:
        await session.execute(insert(AuditEntry), _entries(MANY))
    async with sqlite_db.read() as session:
        rows = (await session.execute(
            select(AuditEntry.entity_id).order_by(AuditEntry.id))).scalars().all()
        assert rows == [str(n) for n in range(MANY)]
        # Streamed (exports read this way): every row once, in order, in yield_per batches.
        result = await session.stream_scalars(
            select(AuditEntry.entity_id).order_by(AuditEntry.id).execution_options(
                yield_per=300))
        streamed = [value async for value in result]
        assert streamed == rows
        # A stream left half read is closed, and the connection goes on working.
        result = await session.stream_scalars(select(AuditEntry.id).order_by(AuditEntry.id))
        first = await result.fetchmany(5)
        assert first == [1, 2, 3, 4, 5]
        await result.close()
        total = (await session.execute(select(func.count()).select_from(AuditEntry))).scalar()
        assert total == MANY


async def test_row_counts_and_errors_are_the_drivers(sqlite_db: Database) -> None:
    async with sqlite_db.write() as session:
        session.add(Site(id="S01", name="One", tz="Asia/Shanghai", created_at=NOW))
        session.add(Site(id="S02", name="Two", tz="Asia/Shanghai", created_at=NOW))
    async with sqlite_db.write() as session:
        changed = await session.execute(update(Site).values(phone="+8610000"))
        assert changed.rowcount == 2  # type: ignore[attr-defined]
        none = await session.execute(update(Site).where(Site.id == "S09").values(name="x"))
        assert none.rowcount == 0  # type: ignore[attr-defined]
    async def rename_then_duplicate() -> None:
        async with sqlite_db.write() as session:
            await session.execute(update(Site).where(Site.id == "S01").values(name="Renamed"))
            session.add(Site(id="S02", name="Again", tz="Asia/Shanghai", created_at=NOW))

    with pytest.raises(IntegrityError):
        await rename_then_duplicate()
    # The failed unit of work changed nothing, and the database answers as before.
    async with sqlite_db.read() as session:
        names = (await session.execute(select(Site.name).order_by(Site.id))).scalars().all()
        assert names == ["One", "Two"]
        assert (await session.execute(text("SELECT 1"))).scalar() == 1


async def test_the_connection_keeps_aiosqlites_api(tmp_path: Path) -> None:
    connection = await sqlite_driver.connector([str(tmp_path / "plain.db")], {})()
    try:
        cursor = await connection.cursor()
        await cursor.executescript("CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (1), (2);")
        many = await connection.executemany("INSERT INTO t VALUES (?)", [(3,), (4,)])
        assert many.rowcount == 2
        async with connection.execute("SELECT x FROM t ORDER BY x") as rows:
            assert await rows.fetchone() == (1,)
            assert await rows.fetchmany(2) == [(2,), (3,)]
            assert await rows.fetchall() == [(4,)]
        with pytest.raises(sqlite3.OperationalError):
            await connection.execute("SELECT nothing FROM nowhere")
    finally:
        await connection.close()

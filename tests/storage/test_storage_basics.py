"""The schema round-trips UTC times the same on both backends; the audit trail is append-only."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from sqlalchemy import delete, select, text, update
from sqlalchemy.exc import DBAPIError

from storage import audit
from storage.audit import Actor
from storage.db import Database
from storage.models import AuditEntry, Site


async def test_utc_datetime_round_trips(db: Database) -> None:
    shanghai = timezone(timedelta(hours=8))
    moment = datetime(2026, 1, 1, 8, 30, 15, 123456, tzinfo=shanghai)
    async with db.write() as session:
        session.add(Site(id="S1", name="Site one", tz="Asia/Shanghai", created_at=moment))
    async with db.read() as session:
        site = (await session.execute(select(Site))).scalar_one()
    assert site.created_at == moment
    assert site.created_at.tzinfo == UTC
    assert site.created_at.hour == 0


async def test_naive_datetime_is_refused(db: Database) -> None:
    with pytest.raises(Exception, match="naive"):
        async with db.write() as session:
            session.add(Site(id="S1", name="x", tz="UTC", created_at=datetime(2026, 1, 1)))  # noqa: DTZ001 (naive on purpose)


async def test_audit_change_records_old_and_new(db: Database) -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    async with db.write() as session:
        site = Site(id="S1", name="Old", tz="UTC", created_at=now)
        await audit.create(session, site, at=now, actor=Actor.cli("admin"), reason="setup")
        assert audit.change(session, site, at=now, actor=Actor.cli("admin"), reason="typo",
                            name="New")
        assert not audit.change(session, site, at=now, actor=Actor.cli("admin"), name="New")
    async with db.read() as session:
        rows = (await session.execute(select(AuditEntry).order_by(AuditEntry.id))).scalars().all()
    assert [r.action for r in rows] == ["create", "update"]
    assert (rows[1].field, rows[1].old_value, rows[1].new_value, rows[1].reason) == (
        "name", "Old", "New", "typo")
    assert rows[1].at == now
    assert rows[1].actor_kind == "cli"


@pytest.mark.postgres
async def test_postgres_refuses_audit_update_and_delete(pg_db: Database) -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    async with pg_db.write() as session:
        audit.record(session, at=now, actor=Actor.system(), action="create", entity="x",
                     entity_id="1")
    for statement in (update(AuditEntry).values(reason="tampered"), delete(AuditEntry),
                      text("TRUNCATE audit_log")):
        with pytest.raises(DBAPIError, match="append-only"):
            async with pg_db.write() as session:
                await session.execute(statement)
    async with pg_db.read() as session:
        assert (await session.execute(select(AuditEntry.reason))).scalar_one() is None


async def test_both_backends_refuse_audit_update_and_delete(db: Database) -> None:
    """Issue 17: append-only on SQLite too (triggers), not only on PostgreSQL."""
    now = datetime(2026, 1, 1, tzinfo=UTC)
    async with db.write() as session:
        audit.record(session, at=now, actor=Actor.system(), action="create", entity="x",
                     entity_id="1", reason="test")
    for statement in (update(AuditEntry).values(reason="tampered"), delete(AuditEntry)):
        with pytest.raises(DBAPIError, match="append-only"):
            async with db.write() as session:
                await session.execute(statement)
    async with db.read() as session:
        assert (await session.execute(select(AuditEntry.reason))).scalar_one() == "test"


async def test_foreign_keys_enforced(db: Database) -> None:
    from storage.models import Patient

    with pytest.raises(DBAPIError):
        async with db.write() as session:
            session.add(Patient(subject_id="P1", site_id="NOPE", baseline=date(2026, 1, 1),
                                dose_time="08:00", tz="UTC", language="en",
                                created_at=datetime(2026, 1, 1, tzinfo=UTC)))

"""Roles and site scoping of staff, and the audit of every look at patient data."""

from __future__ import annotations

from sqlalchemy import select

from storage.db import Database
from storage.models import AuditEntry
from study import staff_access
from tests.test_staff_fixtures import T0, add_patient, add_site, add_staff


async def test_roles_see_and_act_on_their_own_site_only(sqlite_db: Database) -> None:
    async with sqlite_db.write() as session:
        await add_site(session, "BJ01")
        await add_site(session, "SH02")
        coordinator = await add_staff(session, "BJ01", "coordinator")
        investigator = await add_staff(session, "BJ01", "investigator")
        pi = await add_staff(session, "BJ01", "pi")
        monitor = await add_staff(session, "BJ01", "monitor")
        admin = await add_staff(session, None, "admin")
        retired = await add_staff(session, "BJ01", "coordinator", active=False)
    for staff in (coordinator, investigator, pi):
        assert staff_access.can_view(staff, "BJ01")
        assert staff_access.can_act(staff, "BJ01")
        assert staff_access.can_acknowledge(staff, "BJ01")
        assert not staff_access.can_view(staff, "SH02")
        assert not staff_access.can_acknowledge(staff, "SH02")
    assert staff_access.can_view(monitor, "BJ01")
    assert not staff_access.can_view(monitor, "SH02")
    assert not staff_access.can_act(monitor, "BJ01")
    assert not staff_access.can_acknowledge(monitor, "BJ01")
    assert staff_access.can_view(admin, "SH02") and staff_access.can_acknowledge(admin, "SH02")
    assert not staff_access.is_staff(retired)
    assert not staff_access.can_view(retired, "BJ01")
    assert not staff_access.is_staff(None)


async def test_active_staff_by_telegram_id_ignores_inactive_and_strangers(
        sqlite_db: Database) -> None:
    async with sqlite_db.write() as session:
        await add_site(session, "BJ01")
        active = await add_staff(session, "BJ01", "coordinator")
        retired = await add_staff(session, "BJ01", "coordinator", active=False)
    async with sqlite_db.read() as session:
        assert active.telegram_id is not None and retired.telegram_id is not None
        found = await staff_access.active_staff(session, active.telegram_id)
        assert found is not None and found.id == active.id
        assert await staff_access.active_staff(session, retired.telegram_id) is None
        assert await staff_access.active_staff(session, 12345) is None


async def test_other_sites_subject_is_not_found_like_a_missing_one_and_audited(
        db: Database) -> None:
    async with db.write() as session:
        await add_site(session, "BJ01")
        await add_site(session, "SH02")
        coordinator = await add_staff(session, "BJ01", "coordinator")
        await add_patient(session, "BJ01-001", "BJ01")
        await add_patient(session, "SH02-001", "SH02")
    async with db.write() as session:
        own = await staff_access.find_patient(session, coordinator, "BJ01-001",
                                              command="patient", now=T0)
        other = await staff_access.find_patient(session, coordinator, "SH02-001",
                                                command="patient", now=T0)
        missing = await staff_access.find_patient(session, coordinator, "XX99-999",
                                                  command="patient", now=T0)
    assert own is not None and own.subject_id == "BJ01-001"
    assert other is None and missing is None
    async with db.read() as session:
        rows = (await session.execute(select(AuditEntry).where(
            AuditEntry.action == "query").order_by(AuditEntry.id))).scalars().all()
    assert [(r.actor_kind, r.actor_id, r.entity_id, r.field) for r in rows] == [
        ("staff", str(coordinator.id), "BJ01-001", "patient"),
        ("staff", str(coordinator.id), "SH02-001", "patient"),
        ("staff", str(coordinator.id), "XX99-999", "patient"),
    ]
    assert rows[0].reason is None
    assert rows[1].reason is not None and rows[1].reason.startswith("refused")
    assert rows[2].reason is not None and rows[2].reason.startswith("refused")
    assert all(r.at == T0 for r in rows)

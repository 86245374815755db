"""Roles and site scoping of staff, and the audit of every look at patient data."""

from __future__ import annotations

from sqlalchemy import select

from bot import staff_alerts
from bot.staff import STAFF_COMMANDS
from storage.db import Database
from storage.models import Alert, AuditEntry, Staff
from study import staff_access
from tests.factories import T0, alert_row, patient_row, site_row, staff_row
from trial.protocol import load_protocol


async def test_roles_see_and_act_on_their_own_site_only(sqlite_db: Database) -> None:
    async with sqlite_db.write() as session:
        await site_row(session, "BJ01")
        await site_row(session, "SH02")
        coordinator = await staff_row(session, "BJ01", "coordinator")
        investigator = await staff_row(session, "BJ01", "investigator")
        pi = await staff_row(session, "BJ01", "pi")
        monitor = await staff_row(session, "BJ01", "monitor")
        admin = await staff_row(session, None, "admin")
        retired = await staff_row(session, "BJ01", "coordinator", active=False)
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
    assert staff_access.can_view(admin, "SH02")
    assert staff_access.can_acknowledge(admin, "SH02")
    assert not staff_access.is_staff(retired)
    assert not staff_access.can_view(retired, "BJ01")
    assert not staff_access.is_staff(None)


async def test_active_staff_by_telegram_id_ignores_inactive_and_strangers(
        sqlite_db: Database) -> None:
    async with sqlite_db.write() as session:
        await site_row(session, "BJ01")
        active = await staff_row(session, "BJ01", "coordinator")
        retired = await staff_row(session, "BJ01", "coordinator", active=False)
    async with sqlite_db.read() as session:
        assert active.telegram_id is not None
        assert retired.telegram_id is not None
        found = await staff_access.active_staff(session, active.telegram_id)
        assert found is not None
        assert found.id == active.id
        assert await staff_access.active_staff(session, retired.telegram_id) is None
        assert await staff_access.active_staff(session, 12345) is None


async def test_other_sites_subject_is_not_found_like_a_missing_one_and_audited(
        db: Database) -> None:
    async with db.write() as session:
        await site_row(session, "BJ01")
        await site_row(session, "SH02")
        coordinator = await staff_row(session, "BJ01", "coordinator")
        await patient_row(session, "BJ01-001", "BJ01")
        await patient_row(session, "SH02-001", "SH02")
    async with db.write() as session:
        own = await staff_access.find_patient(session, coordinator, "BJ01-001",
                                              command="patient", now=T0)
        other = await staff_access.find_patient(session, coordinator, "SH02-001",
                                                command="patient", now=T0)
        missing = await staff_access.find_patient(session, coordinator, "XX99-999",
                                                  command="patient", now=T0)
    assert own is not None
    assert own.subject_id == "BJ01-001"
    assert other is None
    assert missing is None
    async with db.read() as session:
        rows = (await session.execute(select(AuditEntry).where(
            AuditEntry.action == "query").order_by(AuditEntry.id))).scalars().all()
    assert [(r.actor_kind, r.actor_id, r.entity_id, r.field) for r in rows] == [
        ("staff", str(coordinator.id), "BJ01-001", "patient"),
        ("staff", str(coordinator.id), "SH02-001", "patient"),
        ("staff", str(coordinator.id), "XX99-999", "patient"),
    ]
    assert rows[0].reason is None
    assert rows[1].reason is not None
    assert rows[1].reason.startswith("refused")
    assert rows[2].reason is not None
    assert rows[2].reason.startswith("refused")
    assert all(r.at == T0 for r in rows)


async def _open_alert_at_bj01(db: Database) -> tuple[Staff, Staff, Staff, Alert]:
    """An open alert at BJ01; its monitor, a coordinator of SH02, and its coordinator."""
    async with db.write() as session:
        await site_row(session, "BJ01")
        await site_row(session, "SH02")
        monitor = await staff_row(session, "BJ01", "monitor")
        stranger_site = await staff_row(session, "SH02", "coordinator")
        coordinator = await staff_row(session, "BJ01", "coordinator")
        alert = await alert_row(session, await patient_row(session, "BJ01-001", "BJ01"))
    return monitor, stranger_site, coordinator, alert


async def test_a_monitor_cannot_acknowledge_an_alert_and_another_site_sees_not_found(
        db: Database) -> None:
    protocol = load_protocol()
    monitor, stranger_site, coordinator, alert = await _open_alert_at_bj01(db)
    found = STAFF_COMMANDS.find_action(f"alert:ack:{alert.id}")
    assert found is not None
    handler, payload = found
    for staff, refusal in ((monitor, "alert.error_not_permitted"),
                           (stranger_site, "alert.error_not_found")):
        async with db.write() as session:
            replies = await handler(session, protocol, staff, payload, now=T0)
        assert [r.message_id for r in replies] == [refusal]
        async with db.read() as session:
            still = await session.get(Alert, alert.id)
            assert still is not None
            assert still.status == "open"
    async with db.write() as session:
        await handler(session, protocol, coordinator, payload, now=T0)
    async with db.read() as session:
        acked = await session.get(Alert, alert.id)
        assert acked is not None
        assert acked.status == "acknowledged"
    assert not staff_access.can_acknowledge(monitor, "BJ01")


async def test_the_resolve_button_follows_the_same_rules_as_the_command(db: Database) -> None:
    protocol = load_protocol()
    monitor, stranger_site, coordinator, alert = await _open_alert_at_bj01(db)
    found = STAFF_COMMANDS.find_action(f"alert:resolve:{alert.id}")
    assert found is not None
    handler, payload = found

    async def press(staff: Staff) -> list[str]:
        async with db.write() as session:
            replies = await handler(session, protocol, staff, payload, now=T0)
        return [r.message_id for r in replies]

    assert await press(monitor) == ["alert.error_not_permitted"]
    assert await press(stranger_site) == ["alert.error_not_found"]
    assert await press(coordinator) == ["alert.error_note_required"]  # the button has no note
    async with db.write() as session:
        await staff_alerts.resolve(session, protocol, coordinator, f"{alert.id} called back",
                                   now=T0)
    assert await press(coordinator) == ["alert.error_already_resolved"]

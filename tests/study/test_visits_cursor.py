"""`next_notice_at`: the visit's notice cursor, so a tick reads only visits whose notice is due."""

from __future__ import annotations

from datetime import UTC, date, datetime

from sqlalchemy import select, update

from storage.audit import Actor
from storage.db import Database
from storage.models import Patient, Visit
from study import visits
from tests.study import visits_support as support
from trial.protocol import Protocol

T0 = datetime(2026, 2, 20, 2, 0, tzinfo=UTC)
BASELINE = date(2026, 3, 2)  # W4 on Mon 2026-03-30
STAFF = Actor.staff(1)


def utc(year: int, month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


async def _setup(db: Database, protocol: Protocol) -> int:
    await support.site(db, T0)
    patient = await support.patient(db, protocol, T0, "BJ01-001", baseline=BASELINE,
                                    phone="+8613800000001")
    return patient.id


async def _w4(db: Database, patient_id: int) -> Visit:
    async with db.read() as session:
        return await support.visit(session, patient_id, "W4")


async def _may_be_due(db: Database, protocol: Protocol, now: datetime) -> bool:
    async with db.read() as session:
        return bool((await session.execute(select(
            visits.notices_may_be_due(now)))).scalar())


async def _plan(db: Database, protocol: Protocol, now: datetime) -> int:
    async with db.write() as session:
        return await visits.plan_notices(session, protocol, now)


async def test_the_cursor_follows_notices_moves_and_completion(db: Database,
                                                               protocol: Protocol) -> None:
    patient_id = await _setup(db, protocol)
    async with db.read() as session:
        screening = await support.visit(session, patient_id, "SCR")
    assert screening.next_notice_at is None  # a visit without notices
    assert (await _w4(db, patient_id)).next_notice_at == utc(2026, 3, 27, 1)  # 09:00 Beijing
    assert await _plan(db, protocol, utc(2026, 3, 26, 0)) == 0  # W0's passed notices: dropped
    assert not await _may_be_due(db, protocol, utc(2026, 3, 27, 0, 59))
    assert await _may_be_due(db, protocol, utc(2026, 3, 27, 1))
    assert await _plan(db, protocol, utc(2026, 3, 27, 2)) == 1
    assert (await _w4(db, patient_id)).next_notice_at == utc(2026, 3, 29, 1)  # the 1-day one
    assert not await _may_be_due(db, protocol, utc(2026, 3, 27, 3))
    async with db.write() as session:
        patient = await visits.find_patient(session, "BJ01-001")
        await visits.move_visit(session, protocol, patient, "W4", date(2026, 4, 1),
                                reason="patient travelling", now=utc(2026, 3, 27, 3),
                                actor=STAFF)
    assert (await _w4(db, patient_id)).next_notice_at == utc(2026, 3, 29, 1)  # 3 days before
    assert await _plan(db, protocol, utc(2026, 3, 29, 1)) == 1
    assert (await _w4(db, patient_id)).next_notice_at == utc(2026, 3, 31, 1)
    async with db.write() as session:
        patient = await visits.find_patient(session, "BJ01-001")
        await visits.mark_done(session, protocol, patient, "W4", done_date=None,
                               now=utc(2026, 3, 30, 3), actor=STAFF)
    assert (await _w4(db, patient_id)).next_notice_at is None


async def test_a_held_notice_keeps_the_cursor_until_its_day_is_over(db: Database,
                                                                    protocol: Protocol) -> None:
    patient_id = await _setup(db, protocol)
    async with db.write() as session:
        await session.execute(update(Patient).values(opted_out=True))
    assert await _plan(db, protocol, utc(2026, 3, 27, 2)) == 0
    assert (await _w4(db, patient_id)).next_notice_at == utc(2026, 3, 27, 1)  # looked at again
    # 22:00 Beijing, quiet hours: too late for "in 3 days", so it is dropped, never sent.
    assert await _plan(db, protocol, utc(2026, 3, 27, 14)) == 0
    assert (await _w4(db, patient_id)).next_notice_at == utc(2026, 3, 29, 1)
    assert not await _may_be_due(db, protocol, utc(2026, 3, 28, 12))
    async with db.write() as session:
        await session.execute(update(Patient).values(opted_out=False))
    assert await _plan(db, protocol, utc(2026, 3, 29, 1)) == 1
    assert [m.dedupe_key.rsplit(":", 1)[1] for m in await support.visit_messages(db)] == ["d1"]
    assert (await _w4(db, patient_id)).next_notice_at is None

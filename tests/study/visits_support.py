"""Helpers for the visit tests: a site, staff and enrolled patients through the real code."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage import audit
from storage.audit import Actor
from storage.db import Database
from storage.models import OutboundMessage, Patient, Site, Staff, Visit
from study.enrolment import add_site, add_staff, enroll
from trial.enrolment import Enrolment
from trial.protocol import Protocol

ADMIN = Actor.cli("test")


async def site(db: Database, now: datetime, site_id: str = "BJ01",
               tz: str = "Asia/Shanghai") -> Site:
    """A registered site."""
    async with db.write() as session:
        return await add_site(session, site_id=site_id, name="Clinic", tz=tz, phone=None,
                              now=now, actor=ADMIN)


async def staff(db: Database, now: datetime, *, site_id: str | None = "BJ01",
                role: str = "coordinator", telegram_id: int = 900) -> Staff:
    """A registered staff member."""
    async with db.write() as session:
        return await add_staff(session, site_id=site_id, role=role, name="Nurse",
                               telegram_id=telegram_id, phone=None, language="en", now=now,
                               actor=ADMIN)


async def patient(db: Database, protocol: Protocol, now: datetime, subject: str, *,
                  baseline: date, site_id: str = "BJ01", tz: str | None = None,
                  language: str = "zh", phone: str | None = None,
                  telegram_id: int | None = None, **fields: object) -> Patient:
    """An enrolled patient (optionally linked to Telegram, paused, opted out...)."""
    async with db.write() as session:
        enrolment = Enrolment(subject_id=subject, site_id=site_id, baseline=baseline,
                              dose_time="08:00", language=language, phone=phone, tz=tz)
        row, _ = await enroll(session, protocol, enrolment, now=now, actor=ADMIN)
        audit.change(session, row, at=now, actor=ADMIN, reason="test setup",
                     telegram_id=telegram_id, **fields)
        return row


async def visit(session: AsyncSession, patient_id: int, name: str) -> Visit:
    """One stored visit."""
    return (await session.execute(select(Visit).where(
        Visit.patient_id == patient_id, Visit.name == name))).scalar_one()


async def visit_messages(db: Database) -> list[OutboundMessage]:
    """Every visit and phase notice in the outbox, in key order."""
    async with db.read() as session:
        return list((await session.execute(select(OutboundMessage).where(
            OutboundMessage.dedupe_key.like("visit:%")
            | OutboundMessage.dedupe_key.like("phase:%"))
            .order_by(OutboundMessage.id))).scalars())

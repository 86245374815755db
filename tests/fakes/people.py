"""A site, its staff and enrolled patients, made through the real enrolment operations."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from storage.audit import Actor
from storage.db import Database
from study import enrolment
from trial.enrolment import validate_enrolment
from trial.protocol import Protocol

ACTOR = Actor.cli("test")


@dataclass(frozen=True)
class Enrolled:
    patient_id: int
    subject_id: str
    code: str
    phone: str | None


async def add_site(db: Database, now: datetime, *, site: str = "BJ01",
                   phone: str | None = "+861012345678") -> None:
    """A site in Shanghai time."""
    async with db.write() as session:
        await enrolment.add_site(session, site_id=site, name="Site", tz="Asia/Shanghai",
                                 phone=phone, now=now, actor=ACTOR)


async def add_staff(db: Database, now: datetime, *, telegram_id: int | None = 9001,
                    phone: str | None = None, role: str = "coordinator", site: str = "BJ01",
                    language: str = "en") -> int:
    """A staff member; returns the id."""
    async with db.write() as session:
        staff = await enrolment.add_staff(session, site_id=site, role=role, name="Nurse",
                                          telegram_id=telegram_id, phone=phone,
                                          language=language, now=now, actor=ACTOR)
        return staff.id


async def enrol(db: Database, protocol: Protocol, now: datetime, *, subject: str = "S001",
                phone: str | None = None, language: str = "en", site: str = "BJ01",
                baseline: date | None = None, dose_time: str = "08:00") -> Enrolled:
    """An enrolled patient and their one-time link code."""
    request = validate_enrolment(subject=subject, site=site,
                                 baseline_date=(baseline or now.date()).isoformat(),
                                 dose_at=dose_time, lang=language, phone_number=phone)
    async with db.write() as session:
        patient, code = await enrolment.enroll(session, protocol, request, now=now, actor=ACTOR)
        return Enrolled(patient.id, patient.subject_id, code, patient.phone)

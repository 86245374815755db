"""Every test's way to a given state, in one place.

The first part enrols through the real operations (`add_site`, `add_staff`, `enrol`: committed,
as the CLI would); the second writes rows straight into an open session (`site_row`,
`staff_row`, `patient_row`, `dose_row`, `alert_row`, `report_row`, `visit_row`) for tests that
need a state the operations would take many steps to reach. `read_patient` reads a patient back
as committed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from storage.audit import Actor
from storage.db import Database
from storage.models import Alert, DoseRecord, Patient, Site, Staff, SymptomReport, Visit
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


# Rows written straight into an open session.

T0 = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)  # the `clock` fixture's start (08:00 in Shanghai)
SHANGHAI = "Asia/Shanghai"


async def read_patient(db: Database, patient_id: int) -> Patient:
    """A patient as committed (for what a test checks afterwards)."""
    async with db.read() as session:
        row = await session.get(Patient, patient_id)
        assert row is not None
        return row


async def site_row(session: AsyncSession, site_id: str, tz: str = SHANGHAI) -> Site:
    site = Site(id=site_id, name=f"Hospital {site_id}", tz=tz, created_at=T0)
    session.add(site)
    await session.flush()
    return site


_telegram_ids = iter(range(900_000, 2_000_000))


async def staff_row(session: AsyncSession, site_id: str | None, role: str, *,
                    language: str = "en", telegram: bool = True, active: bool = True) -> Staff:
    staff = Staff(site_id=site_id, role=role, name=f"{role} of {site_id}",
                  telegram_id=next(_telegram_ids) if telegram else None, language=language,
                  active=active, telegram_reachable=True, created_at=T0)
    session.add(staff)
    await session.flush()
    return staff


async def patient_row(session: AsyncSession, subject_id: str, site_id: str, *,
                      baseline: date = date(2026, 1, 5), tz: str = SHANGHAI,
                      telegram_id: int | None = None, phone: str | None = None,
                      status: str = "active", opted_out: bool = False) -> Patient:
    patient = Patient(subject_id=subject_id, site_id=site_id, baseline=baseline,
                      dose_time="09:00", tz=tz, language="zh", phone=phone,
                      telegram_id=telegram_id, status=status, opted_out=opted_out,
                      telegram_reachable=True, sms_reachable=True, created_at=T0)
    session.add(patient)
    await session.flush()
    return patient


async def dose_row(session: AsyncSession, patient: Patient, day: date, state: str, *,
                   late_answer: str | None = None, skip_reason: str | None = None,
                   answered: bool = True) -> DoseRecord:
    due = datetime.combine(day, time(9, 0), tzinfo=ZoneInfo(patient.tz)).astimezone(UTC)
    closed = state not in ("scheduled", "reminded", "snoozed")
    dose = DoseRecord(patient_id=patient.id, local_date=day, due_at=due, state=state,
                      cutoff_at=due + timedelta(hours=12), snoozes=0,
                      answered_at=due + timedelta(minutes=5) if closed and answered
                      and state != "no_response" else None,
                      closed_at=due + timedelta(hours=12) if closed else None,
                      skip_reason=skip_reason, late_answer=late_answer,
                      late_answer_at=due + timedelta(hours=13) if late_answer else None)
    session.add(dose)
    await session.flush()
    return dose


async def alert_row(session: AsyncSession, patient: Patient, *, tier: str = "same_day",
                    status: str = "open", at: datetime = T0, summary: str = "发烧 38.5") -> Alert:
    alert = Alert(site_id=patient.site_id, patient_id=patient.id, kind="symptom", tier=tier,
                  status=status, summary=summary, opened_at=at, received_at=at, level=0,
                  pages=0)
    session.add(alert)
    await session.flush()
    return alert


async def report_row(session: AsyncSession, patient: Patient, text: str, *,
                     tier: str = "routine", at: datetime = T0) -> SymptomReport:
    report = SymptomReport(patient_id=patient.id, source="free_text", raw_text=text, parsed={},
                           tier=tier, reasons=["头痛"], possible_sae=False, received_at=at)
    session.add(report)
    await session.flush()
    return report


async def visit_row(session: AsyncSession, patient: Patient, name: str, day: date, *,
                    status: str = "planned", window: int = 3) -> Visit:
    visit = Visit(patient_id=patient.id, name=name, target_date=day,
                  window_start=day - timedelta(days=window),
                  window_end=day + timedelta(days=window), scheduled_date=day, status=status,
                  out_of_window=False, revision=0)
    session.add(visit)
    await session.flush()
    return visit

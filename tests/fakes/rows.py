"""Rows written straight into the database, for tests that need a given state (sites, staff,
patients, doses, alerts, reports, visits). `tests.fakes.people` enrols through the real
operations instead."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Alert, DoseRecord, Patient, Site, Staff, SymptomReport, Visit

T0 = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)  # the `clock` fixture's start (08:00 in Shanghai)
SHANGHAI = "Asia/Shanghai"


async def add_site(session: AsyncSession, site_id: str, tz: str = SHANGHAI) -> Site:
    site = Site(id=site_id, name=f"Hospital {site_id}", tz=tz, created_at=T0)
    session.add(site)
    await session.flush()
    return site


_telegram_ids = iter(range(900_000, 2_000_000))


async def add_staff(session: AsyncSession, site_id: str | None, role: str, *,
                    language: str = "en", telegram: bool = True, active: bool = True) -> Staff:
    staff = Staff(site_id=site_id, role=role, name=f"{role} of {site_id}",
                  telegram_id=next(_telegram_ids) if telegram else None, language=language,
                  active=active, telegram_reachable=True, created_at=T0)
    session.add(staff)
    await session.flush()
    return staff


async def add_patient(session: AsyncSession, subject_id: str, site_id: str, *,
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


async def add_dose(session: AsyncSession, patient: Patient, day: date, state: str, *,
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


async def add_alert(session: AsyncSession, patient: Patient, *, tier: str = "same_day",
                    status: str = "open", at: datetime = T0, summary: str = "发烧 38.5") -> Alert:
    alert = Alert(site_id=patient.site_id, patient_id=patient.id, kind="symptom", tier=tier,
                  status=status, summary=summary, opened_at=at, received_at=at, level=0,
                  pages=0)
    session.add(alert)
    await session.flush()
    return alert


async def add_report(session: AsyncSession, patient: Patient, text: str, *,
                     tier: str = "routine", at: datetime = T0) -> SymptomReport:
    report = SymptomReport(patient_id=patient.id, source="free_text", raw_text=text, parsed={},
                           tier=tier, reasons=["头痛"], possible_sae=False, received_at=at)
    session.add(report)
    await session.flush()
    return report


async def add_visit(session: AsyncSession, patient: Patient, name: str, day: date, *,
                    status: str = "planned", window: int = 3) -> Visit:
    visit = Visit(patient_id=patient.id, name=name, target_date=day,
                  window_start=day - timedelta(days=window),
                  window_end=day + timedelta(days=window), scheduled_date=day, status=status,
                  out_of_window=False, revision=0)
    session.add(visit)
    await session.flush()
    return visit

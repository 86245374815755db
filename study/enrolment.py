"""Setting up a study: sites, staff, patients and their one-time link codes, all audited."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage import audit
from storage.audit import Actor
from storage.models import LinkCode, Patient, Site, Staff
from study.visits import create_visits
from trial import enrolment as check
from trial.enrolment import Enrolment, EnrolmentError
from trial.protocol import Protocol

# No 0/O/1/I/L: codes are read aloud and typed from paper.
CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
CODE_LENGTH = 8


def hash_code(code: str) -> str:
    """The stored form of a link code (codes are never stored in clear)."""
    return hashlib.sha256(code.strip().upper().encode()).hexdigest()


def new_code() -> str:
    """A fresh random link code."""
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


async def add_site(session: AsyncSession, *, site_id: str, name: str, tz: str,
                   phone: str | None, now: datetime, actor: Actor) -> Site:
    """Register a site."""
    site_id = check.site_id(site_id)
    if not name.strip():
        raise EnrolmentError("name", "a site needs a name")
    if await session.get(Site, site_id) is not None:
        raise EnrolmentError("site", f"site {site_id} already exists")
    site = Site(id=site_id, name=name.strip(), tz=check.timezone(tz),
                phone=check.phone(phone) if phone else None, created_at=now)
    await audit.create(session, site, at=now, actor=actor)
    return site


async def add_staff(session: AsyncSession, *, site_id: str | None, role: str, name: str,
                    telegram_id: int | None, phone: str | None, language: str,
                    now: datetime, actor: Actor) -> Staff:
    """Register a staff member (an admin may have no site)."""
    role = check.role(role)
    if not name.strip():
        raise EnrolmentError("name", "a staff member needs a name")
    if site_id is None and role not in ("admin", "medical_monitor"):
        raise EnrolmentError("site", "every role but admin and medical_monitor belongs to a "
                             "site")
    if site_id is not None and await session.get(Site, site_id) is None:
        raise EnrolmentError("site", f"no site {site_id}")
    if telegram_id is not None and (await session.execute(
            select(Staff.id).where(Staff.telegram_id == telegram_id))).first():
        raise EnrolmentError("telegram_id", f"{telegram_id} is already registered")
    staff = Staff(site_id=site_id, role=role, name=name.strip(), telegram_id=telegram_id,
                  phone=check.phone(phone) if phone else None, language=check.language(language),
                  active=True, telegram_reachable=True, created_at=now)
    await audit.create(session, staff, at=now, actor=actor)
    return staff


async def enroll(session: AsyncSession, protocol: Protocol, enrolment: Enrolment, *,
                 now: datetime, actor: Actor) -> tuple[Patient, str]:
    """Enrol a validated patient; return the patient and their one-time link code."""
    check.dose_time_outside_quiet_hours(enrolment.dose_time, protocol.quiet_hours)
    site = await session.get(Site, enrolment.site_id)
    if site is None:
        raise EnrolmentError("site", f"no site {enrolment.site_id}")
    if (await session.execute(select(Patient.id).where(
            Patient.subject_id == enrolment.subject_id))).first():
        raise EnrolmentError("subject_id", f"{enrolment.subject_id} is already enrolled")
    if enrolment.phone and (await session.execute(select(Patient.id).where(
            Patient.phone == enrolment.phone))).first():
        raise EnrolmentError("phone", f"{enrolment.phone} belongs to another patient")
    patient = Patient(subject_id=enrolment.subject_id, site_id=site.id,
                      baseline=enrolment.baseline, dose_time=enrolment.dose_time,
                      tz=enrolment.tz or site.tz, language=enrolment.language,
                      phone=enrolment.phone, status="active", opted_out=False,
                      telegram_reachable=True, sms_reachable=True, created_at=now)
    await audit.create(session, patient, at=now, actor=actor, reason="enrolment")
    await create_visits(session, protocol, patient, now=now, actor=actor)
    code = await issue_link_code(session, protocol, patient, now=now, actor=actor)
    return patient, code


async def issue_link_code(session: AsyncSession, protocol: Protocol, patient: Patient, *,
                          now: datetime, actor: Actor) -> str:
    """A new single-use link code for a patient's Telegram chat (stored hashed)."""
    code = new_code()
    expires = now + timedelta(hours=protocol.reminders.link_code_ttl_hours)
    session.add(LinkCode(patient_id=patient.id, code_hash=hash_code(code), expires_at=expires,
                         created_at=now))
    audit.record(session, at=now, actor=actor, action="issue_link_code", entity="patients",
                 entity_id=patient.subject_id, new=f"expires {expires.isoformat()}")
    return code


STATUS_CHANGES = {"pause": ("active", "paused"), "resume": ("paused", "active"),
                  "withdraw": (None, "withdrawn")}


@dataclass(frozen=True)
class StatusChange:
    subject_id: str
    old: str
    new: str


async def change_status(session: AsyncSession, subject_id: str, action: str, *, reason: str,
                        now: datetime, actor: Actor) -> StatusChange:
    """Pause, resume or withdraw a patient (messages stop or restart); a reason is required."""
    if not reason.strip():
        raise EnrolmentError("reason", "a reason is required")
    patient = (await session.execute(select(Patient).where(
        Patient.subject_id == subject_id))).scalar_one_or_none()
    if patient is None:
        raise EnrolmentError("subject_id", f"no patient {subject_id}")
    required, new = STATUS_CHANGES[action]
    old = patient.status
    if old == "withdrawn":
        raise EnrolmentError("status", f"{subject_id} is withdrawn; nothing can change that")
    if required is not None and old != required:
        raise EnrolmentError("status", f"{subject_id} is {old}, not {required}")
    audit.change(session, patient, at=now, actor=actor, reason=reason.strip(), status=new)
    return StatusChange(subject_id, old, new)

"""What is there, as the admin CLI lists it: sites, staff, patients (one in full) and alerts.

Plain dicts, ready for `--json` and for the CLI's tables. The CLI operator administers the whole
study, so contact details appear here (and in `patient show`); each look at patient data is
audited like a staff query.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage import audit
from storage.audit import Actor
from storage.models import Alert, DoseRecord, Patient, Site, Staff, Visit
from study.alerts import UNRESOLVED
from study.changes import find_patient
from study.exports import local
from study.recipients import patient_route, reachable, staff_route
from study.senders import mask_sender
from trial import delivery, schedule
from trial.dose import OPEN_VALUES
from trial.protocol import Protocol


def _looked(session: AsyncSession, actor: Actor, *, command: str, entity: str,
            entity_id: str, now: datetime) -> None:
    audit.record(session, at=now, actor=actor, action="query", entity=entity,
                 entity_id=entity_id[:64], field=command)


async def sites(session: AsyncSession) -> list[dict[str, Any]]:
    """Every site with its number of patients (by status) and of active staff."""
    patients: dict[str, dict[str, int]] = {}
    for site_id, status, count in (await session.execute(
            select(Patient.site_id, Patient.status, func.count())
            .group_by(Patient.site_id, Patient.status))).all():
        patients.setdefault(site_id, {})[status] = count
    staff: dict[str | None, int] = {}
    for staff_site, count in (await session.execute(
            select(Staff.site_id, func.count()).where(Staff.active.is_(True))
            .group_by(Staff.site_id))).all():
        staff[staff_site] = count
    rows = (await session.execute(select(Site).order_by(Site.id))).scalars().all()
    return [{"site": s.id, "name": s.name, "tz": s.tz, "phone": s.phone,
             "patients": sum(patients.get(s.id, {}).values()),
             "active_patients": patients.get(s.id, {}).get("active", 0),
             "staff": staff.get(s.id, 0)} for s in rows]


async def staff(session: AsyncSession, *, site_id: str | None = None) -> list[dict[str, Any]]:
    """Every staff member (of one site, admins included): admins first, then by site, number."""
    statement = select(Staff).order_by(Staff.site_id.is_not(None), Staff.site_id, Staff.id)
    if site_id is not None:
        statement = statement.where((Staff.site_id == site_id) | Staff.site_id.is_(None))
    return [{"staff_id": m.id, "site": m.site_id, "role": m.role, "name": m.name,
             "telegram_id": m.telegram_id, "phone": m.phone,
             "addresses": {p.channel: p.address for p in m.contact_points},
             "language": m.language, "active": m.active, "pageable": bool(staff_route(m))}
            for m in (await session.execute(statement)).scalars()]


def _channels(patient: Patient) -> dict[str, Any]:
    route = patient_route(patient)
    return {"telegram": "linked" if patient.telegram_id is not None else "not linked",
            "telegram_reachable": reachable(patient, "telegram"),
            "sms": "phone" if patient.phone else "no phone",
            "sms_reachable": reachable(patient, "sms"),
            "route": route.channel if route else None}


async def patients(session: AsyncSession, *, site_id: str | None = None,
                   status: str | None = None, now: datetime,
                   actor: Actor) -> list[dict[str, Any]]:
    """Every patient (of one site, in one status), by subject id; the look is audited."""
    statement = select(Patient).order_by(Patient.subject_id)
    if site_id is not None:
        statement = statement.where(Patient.site_id == site_id)
    if status is not None:
        statement = statement.where(Patient.status == status)
    rows = (await session.execute(statement)).scalars().all()
    _looked(session, actor, command="patient list", entity="patients",
            entity_id=site_id or "*", now=now)
    return [{"subject_id": p.subject_id, "site": p.site_id, "status": p.status,
             "opted_out": p.opted_out, "language": p.language, "tz": p.tz,
             "dose_time": p.dose_time, "baseline": p.baseline.isoformat(), **_channels(p)}
            for p in rows]


async def patient(session: AsyncSession, protocol: Protocol, subject_id: str, *,
                  now: datetime, actor: Actor) -> dict[str, Any]:
    """One patient in full: status, channels and reachability, next dose and visit, open
    alerts; the look is audited."""
    p = await find_patient(session, subject_id)
    _looked(session, actor, command="patient show", entity="patients", entity_id=p.subject_id,
            now=now)
    visit = (await session.execute(select(Visit).where(
        Visit.patient_id == p.id, Visit.status == "planned")
        .order_by(Visit.scheduled_date, Visit.id).limit(1))).scalar_one_or_none()
    alerts = (await session.execute(select(Alert).where(
        Alert.patient_id == p.id, Alert.status.in_(UNRESOLVED))
        .order_by(Alert.opened_at, Alert.id))).scalars().all()
    return {"subject_id": p.subject_id, "site": p.site_id, "status": p.status,
            "opted_out": p.opted_out, "language": p.language, "tz": p.tz,
            "dose_time": p.dose_time, "baseline": p.baseline.isoformat(), "phone": p.phone,
            "telegram_id": p.telegram_id, **_channels(p),
            "next_dose": await _next_dose(session, protocol, p, now),
            "next_visit": None if visit is None else {
                "visit": visit.name, "date": visit.scheduled_date.isoformat(),
                "window": f"{visit.window_start.isoformat()}..{visit.window_end.isoformat()}"},
            "open_alerts": [_alert(a, p.subject_id, p.tz) for a in alerts]}


async def _next_dose(session: AsyncSession, protocol: Protocol, p: Patient,
                     now: datetime) -> dict[str, Any] | None:
    """The next dose still open (planned or not yet answered), or the one the plan will make."""
    row = (await session.execute(select(DoseRecord).where(
        DoseRecord.patient_id == p.id, DoseRecord.state.in_(OPEN_VALUES),
        DoseRecord.cutoff_at > now).order_by(DoseRecord.due_at).limit(1))).scalar_one_or_none()
    if row is not None:
        return {"local_date": row.local_date.isoformat(), "due_at": row.due_at,
                "due_at_local": local(row.due_at, p.tz), "state": row.state}
    if not delivery.receives_routine(p.status, p.opted_out):
        return None
    day = max(schedule.local_date(now, p.tz), p.baseline)
    for offset in (0, 1):
        times = schedule.dose_times(protocol.reminders, day + timedelta(days=offset),
                                    p.dose_time, p.tz)
        if times.due_at > now and schedule.in_dosing_period(protocol, p.baseline,
                                                            times.local_date):
            return {"local_date": times.local_date.isoformat(), "due_at": times.due_at,
                    "due_at_local": local(times.due_at, p.tz), "state": "not yet planned"}
    return None


def _alert(a: Alert, subject: str | None, tz: str | None) -> dict[str, Any]:
    # An unregistered sender's alert has no subject: the sender, masked, says who wrote.
    return {"alert_id": a.id, "subject_id": subject,
            "sender": mask_sender(a.sender) if a.sender else None, "site": a.site_id,
            "kind": a.kind,
            "tier": a.tier, "status": a.status, "opened_at": a.opened_at,
            "opened_at_local": local(a.opened_at, tz), "level": a.level, "pages": a.pages,
            "summary": a.summary}


async def alerts(session: AsyncSession, *, site_id: str | None = None, open_only: bool = False,
                 now: datetime, actor: Actor) -> list[dict[str, Any]]:
    """Alerts (of one site; only unresolved ones), newest first; the look is audited."""
    statement = (select(Alert, Patient.subject_id, Site.tz)
                 .join(Site, Site.id == Alert.site_id)
                 .outerjoin(Patient, Patient.id == Alert.patient_id)
                 .order_by(Alert.opened_at.desc(), Alert.id.desc()))
    if site_id is not None:
        statement = statement.where(Alert.site_id == site_id)
    if open_only:
        statement = statement.where(Alert.status.in_(UNRESOLVED))
    rows = (await session.execute(statement)).all()
    _looked(session, actor, command="alert list", entity="alerts", entity_id=site_id or "*",
            now=now)
    return [_alert(a, subject, tz) for a, subject, tz in rows]

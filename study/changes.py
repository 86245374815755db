"""Corrections during the study: a patient's dose time, phone, zone, language or baseline, a new
link code, staff and site details. Every change is audited with its reason; plans that depend
on a changed value (doses not yet reminded, visits not yet done, queued messages) follow it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import and_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from messages.sms import forbidden_words_in
from storage import audit, outbox
from storage.audit import Actor
from storage.models import DoseRecord, LinkCode, OutboundMessage, Patient, Site, Staff
from study import contacts, dose_records
from study.enrolment import issue_link_code
from study.recipients import contact_point
from study.visits import cancel_notices, first_notice_at
from trial import dose as rules
from trial import enrolment as check
from trial import schedule
from trial import visits as visit_rules
from trial.dose import DoseState
from trial.enrolment import EnrolmentError
from trial.protocol import Protocol

# A baseline outside this range of today is surely a typo (a wrong year or month).
BASELINE_PAST = timedelta(days=30)
BASELINE_FUTURE = timedelta(days=90)


@dataclass
class Changes:
    """What one command changed: (field, old, new) in order, and what followed from it."""

    entity_id: str
    fields: list[tuple[str, Any, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """For `--json`."""
        return {"id": self.entity_id,
                "changed": {name: {"old": old, "new": new} for name, old, new in self.fields},
                "notes": self.notes}


def _reason(reason: str) -> str:
    if not reason.strip():
        raise EnrolmentError("reason", "a reason is required")
    return reason.strip()


def _set(session: AsyncSession, row: Any, changes: Changes, *, now: datetime, actor: Actor,
         reason: str, **values: Any) -> None:
    for name, new in values.items():
        old = getattr(row, name)
        if audit.change(session, row, at=now, actor=actor, reason=reason, **{name: new}):
            changes.fields.append((name, old, new))


def plausible_baseline(baseline: date, today: date, *, force: bool) -> None:
    """Refuse a baseline more than 30 days past or 90 days ahead, unless forced."""
    if force:
        return
    if baseline < today - BASELINE_PAST:
        raise EnrolmentError("baseline", f"{baseline} is more than {BASELINE_PAST.days} days "
                             f"before today ({today}); check the year and month, or add --force")
    if baseline > today + BASELINE_FUTURE:
        raise EnrolmentError("baseline", f"{baseline} is more than {BASELINE_FUTURE.days} days "
                             f"after today ({today}); check the year and month, or add --force")


async def find_patient(session: AsyncSession, subject_id: str) -> Patient:
    """The patient with that subject id, or EnrolmentError."""
    patient = (await session.execute(select(Patient).where(
        Patient.subject_id == subject_id.strip()))).scalar_one_or_none()
    if patient is None:
        raise EnrolmentError("subject_id", f"no patient {subject_id.strip()}")
    return patient


async def update_patient(session: AsyncSession, protocol: Protocol, subject_id: str, *,
                         reason: str, now: datetime, actor: Actor, dose_time: str | None = None,
                         phone: str | None = None, tz: str | None = None,
                         language: str | None = None, baseline: str | None = None,
                         force: bool = False) -> Changes:
    """Correct a patient's details; doses not yet reminded and visits not yet done follow."""
    why = _reason(reason)
    patient = await find_patient(session, subject_id)
    if patient.status == "withdrawn":
        raise EnrolmentError("status", f"{patient.subject_id} is withdrawn; nothing can change")
    values: dict[str, Any] = {}
    if dose_time is not None:
        values["dose_time"] = check.dose_time_outside_quiet_hours(
            check.dose_time(dose_time), protocol.quiet_hours)
    if tz is not None:
        values["tz"] = check.timezone(tz)
    if language is not None:
        values["language"] = check.language(language)
    if phone is not None:
        values["phone"] = await _free_phone(session, patient, check.phone(phone))
    if baseline is not None:
        new_baseline = check.baseline(baseline)
        if new_baseline != patient.baseline:
            plausible_baseline(new_baseline, schedule.local_date(now, patient.tz), force=force)
            await _baseline_may_change(session, patient, force=force)
        values["baseline"] = new_baseline
    if not values:
        raise EnrolmentError("update", "nothing to change: give --dose-time, --phone, --tz, "
                             "--language or --baseline")
    changes = Changes(patient.subject_id)
    old_phone = patient.phone
    _set(session, patient, changes, now=now, actor=actor, reason=why, **values)
    changed = {name for name, _, _ in changes.fields}
    if "phone" in changed:
        _set(session, patient, changes, now=now, actor=actor, reason=why, sms_reachable=True)
        moved = await _reroute_sms(session, patient, old_phone)
        if moved:
            changes.notes.append(f"{moved} queued SMS go to the new number")
    if changed & {"dose_time", "tz", "baseline"}:
        moved = await _replan_doses(session, protocol, patient, now=now, actor=actor, reason=why)
        changes.notes.append(f"{moved} dose(s) not yet reminded replanned")
    if changed & {"tz", "baseline"}:
        moved = await _replan_visits(session, protocol, patient, now=now, actor=actor,
                                     reason=why, dates="baseline" in changed)
        changes.notes.append(f"{moved} visit(s) not yet done replanned")
    if force and "baseline" in changed:
        audit.record(session, at=now, actor=actor, action="force", entity="patients",
                     entity_id=patient.subject_id, field="baseline", reason=why)
    return changes


async def _free_phone(session: AsyncSession, patient: Patient, phone: str) -> str:
    holder = (await session.execute(select(Patient.id).where(
        Patient.phone == phone, Patient.id != patient.id))).first()
    if holder:
        raise EnrolmentError("phone", f"{phone} belongs to another patient")
    return phone


async def _baseline_may_change(session: AsyncSession, patient: Patient, *, force: bool) -> None:
    """A baseline moves only before the first answered dose (history would no longer fit)."""
    answered = (await session.execute(select(DoseRecord.id).where(
        DoseRecord.patient_id == patient.id,
        (DoseRecord.answered_at.is_not(None)) | (DoseRecord.late_answer.is_not(None)))
        .limit(1))).first()
    if answered and not force:
        raise EnrolmentError("baseline", f"{patient.subject_id} has answered a dose already; "
                             "moving the baseline would shift every study week (add --force "
                             "if this is really meant)")


async def _reroute_sms(session: AsyncSession, patient: Patient, old: str | None) -> int:
    """Queued SMS to the old number go to the new one (or are cancelled when there is none)."""
    if not old:
        return 0
    where = and_(OutboundMessage.patient_id == patient.id, OutboundMessage.channel == "sms",
                 OutboundMessage.address == old, OutboundMessage.status == outbox.QUEUED)
    result = await session.execute(update(OutboundMessage).where(where)
                                   .values(address=patient.phone)
                                   .execution_options(synchronize_session=False))
    return int(getattr(result, "rowcount", 0) or 0)


async def _replan_doses(session: AsyncSession, protocol: Protocol, patient: Patient, *,
                        now: datetime, actor: Actor, reason: str) -> int:
    """Doses not yet reminded take the new times (when still ahead) or are cancelled outside
    the new dosing period; a dose already reminded keeps its times. Planning looks again now."""
    rows = (await session.execute(select(DoseRecord).where(
        DoseRecord.patient_id == patient.id,
        DoseRecord.state == DoseState.SCHEDULED.value))).scalars().all()
    moved = 0
    for row in rows:
        dose = dose_records.to_dose(row)
        if not schedule.in_dosing_period(protocol, patient.baseline, row.local_date):
            dose_records.store(session, row, rules.cancel(dose, now), now=now, actor=actor,
                               reason=f"{reason} (outside the new dosing period)")
            moved += 1
            continue
        times = schedule.dose_times(protocol.reminders, row.local_date, patient.dose_time,
                                    patient.tz)
        if times.due_at <= now or times.due_at == row.due_at:
            continue  # the new time has passed today: this dose keeps the time it had
        new = dataclasses.replace(dose, due_at=times.due_at, follow_up_at=times.follow_up_at,
                                  cutoff_at=times.cutoff_at)
        dose_records.store(session, row, new, now=now, actor=actor, reason=reason)
        moved += 1
    end = schedule.end_of_doses(protocol, patient.baseline)
    if patient.planned_through is None or patient.planned_through < end - timedelta(days=1):
        patient.plan_next_at = now  # a cursor: the planner derives the next instant itself
    return moved


async def _replan_visits(session: AsyncSession, protocol: Protocol, patient: Patient, *,
                         now: datetime, actor: Actor, reason: str, dates: bool) -> int:
    """Planned visits follow a new baseline (`dates`) or zone; done and missed ones stay."""
    from study.visits import patient_visits

    plans = {p.name: p for p in visit_rules.plan_visits(protocol.visits, patient.baseline)}
    moved = 0
    for visit in await patient_visits(session, patient.id):
        plan = plans.get(visit.name)
        if visit.status != "planned" or plan is None:
            continue
        values: dict[str, Any] = {"revision": visit.revision + 1}
        if dates:
            values.update(target_date=plan.target, window_start=plan.window_start,
                          window_end=plan.window_end, scheduled_date=plan.target,
                          out_of_window=False)
        audit.change(session, visit, at=now, actor=actor, reason=reason, **values)
        visit.next_notice_at = first_notice_at(protocol, visit.name, visit.scheduled_date,
                                               patient.tz, now)
        await cancel_notices(session, visit, now=now, reason=f"replanned: {reason}")
        moved += 1
    return moved


async def relink_patient(session: AsyncSession, protocol: Protocol, subject_id: str, *,
                         reason: str, now: datetime, actor: Actor) -> tuple[Changes, str]:
    """End a patient's Telegram link (chat cleared, unused codes expired) and issue a new code."""
    why = _reason(reason)
    patient = await find_patient(session, subject_id)
    if patient.status == "withdrawn":
        raise EnrolmentError("status", f"{patient.subject_id} is withdrawn; no new code")
    changes = Changes(patient.subject_id)
    old_chat = patient.telegram_id
    _set(session, patient, changes, now=now, actor=actor, reason=why, telegram_id=None,
         telegram_reachable=True)
    if old_chat is not None:
        # Nothing more goes to the chat that was unlinked (a lost or someone else's phone).
        cancelled = await outbox.cancel_queued(
            session, and_(OutboundMessage.patient_id == patient.id,
                          OutboundMessage.channel == "telegram"), now=now, reason=why)
        if cancelled:
            changes.notes.append(f"{cancelled} queued Telegram message(s) cancelled")
    expired = await session.execute(
        update(LinkCode).where(LinkCode.patient_id == patient.id, LinkCode.used_at.is_(None),
                               LinkCode.expires_at > now)
        .values(expires_at=now).returning(LinkCode.id))
    for code_id in expired.scalars():
        audit.record(session, at=now, actor=actor, action="expire_link_code",
                     entity="link_codes", entity_id=str(code_id), reason=why)
    code = await issue_link_code(session, protocol, patient, now=now, actor=actor)
    return changes, code


async def find_staff(session: AsyncSession, staff_id: str) -> Staff:
    """A staff member by number (`7` or `#7`), or EnrolmentError."""
    text = staff_id.strip().lstrip("#")
    staff = await session.get(Staff, int(text)) if text.isdigit() else None
    if staff is None:
        raise EnrolmentError("staff", f"no staff member {staff_id.strip()}")
    return staff


def reachable_staff(telegram_id: int | None, phone: str | None, *, force: bool,
                    other_routes: bool = False) -> None:
    """Refuse a staff member nobody could page (no Telegram id, no phone, no address on
    another channel), unless forced."""
    if telegram_id is None and not phone and not other_routes and not force:
        raise EnrolmentError("contact", "a staff member needs a Telegram id, a phone or a "
                             "chat-app address to be paged (add --telegram-id, --phone or "
                             "--wecom-userid, or --force)")


async def set_addresses(session: AsyncSession, staff: Staff, addresses: Mapping[str, str], *,
                        now: datetime, actor: Actor, reason: str,
                        changes: Changes | None = None) -> Changes:
    """Give a staff member an address on channels without a column of their own (contact
    points: `{"wecom": userid}`); an empty address removes theirs. An address another person
    has is refused. Audited."""
    changes = changes or Changes(str(staff.id))
    for channel, given in addresses.items():
        address = given.strip()
        if len(address) > 64 or any(c.isspace() for c in address):
            raise EnrolmentError(channel, f"{given!r} is not a {channel} address")
        mine = contact_point(staff, channel)
        if not address:
            if mine is not None:
                audit.record(session, at=now, actor=actor, action="delete",
                             entity="contact_points", entity_id=str(mine.id), field="address",
                             old=mine.address, reason=reason)
                changes.fields.append((f"{channel}_address", mine.address, None))
                set_committed_value(staff, "contact_points",
                                    [p for p in staff.contact_points if p is not mine])
                await session.delete(mine)
            continue
        taken = await contacts.find(session, channel, address)
        if taken is not None and (taken.owner_kind, taken.owner_id) != (contacts.STAFF,
                                                                        staff.id):
            raise EnrolmentError(channel, f"{address} is already registered")
        if mine is None or mine.address != address or not mine.reachable:
            await contacts.bind(session, staff, channel=channel, address=address, now=now,
                                actor=actor, reason=reason)
            changes.fields.append((f"{channel}_address", mine.address if mine else None,
                                   address))
    return changes


async def update_staff(session: AsyncSession, staff_id: str, *, reason: str, now: datetime,
                       actor: Actor, phone: str | None = None, telegram_id: int | None = None,
                       language: str | None = None, role: str | None = None,
                       force: bool = False, addresses: Mapping[str, str] | None = None,
                       ) -> Changes:
    """Correct a staff member's contact routes (`addresses`: on contact-point channels, see
    `set_addresses`), language or role."""
    why = _reason(reason)
    staff = await find_staff(session, staff_id)
    values: dict[str, Any] = {}
    if phone is not None:
        values["phone"] = check.phone(phone) if phone.strip() else None
    if telegram_id is not None:
        if telegram_id and (await session.execute(select(Staff.id).where(
                Staff.telegram_id == telegram_id, Staff.id != staff.id))).first():
            raise EnrolmentError("telegram_id", f"{telegram_id} is already registered")
        values["telegram_id"] = telegram_id or None  # 0 removes it
    if language is not None:
        values["language"] = check.language(language)
    if role is not None:
        values["role"] = check.role(role)
        if values["role"] != "admin" and staff.site_id is None:
            raise EnrolmentError("role", "every role but admin belongs to a site")
    if not values and not addresses:
        raise EnrolmentError("update", "nothing to change: give --phone, --telegram-id, "
                             "--wecom-userid, --language or --role")
    changes = Changes(str(staff.id))
    if addresses:
        await set_addresses(session, staff, addresses, now=now, actor=actor, reason=why,
                            changes=changes)
    reachable_staff(values.get("telegram_id", staff.telegram_id), values.get("phone", staff.phone),
                    force=force, other_routes=any(p.reachable for p in staff.contact_points))
    _set(session, staff, changes, now=now, actor=actor, reason=why, **values)
    if "telegram_id" in values:
        _set(session, staff, changes, now=now, actor=actor, reason=why, telegram_reachable=True)
    if force and staff.telegram_id is None and not staff.phone:
        audit.record(session, at=now, actor=actor, action="force", entity="staff",
                     entity_id=str(staff.id), field="contact", reason=why)
    return changes


async def deactivate_staff(session: AsyncSession, staff_id: str, *, reason: str, now: datetime,
                           actor: Actor) -> Changes:
    """A staff member who left: their buttons and commands stop at once, pages skip them."""
    why = _reason(reason)
    staff = await find_staff(session, staff_id)
    if not staff.active:
        raise EnrolmentError("staff", f"staff member #{staff.id} is already deactivated")
    changes = Changes(str(staff.id))
    _set(session, staff, changes, now=now, actor=actor, reason=why, active=False)
    cancelled = await outbox.cancel_queued(session, OutboundMessage.staff_id == staff.id,
                                           now=now, reason=f"staff deactivated: {why}")
    if cancelled:
        changes.notes.append(f"{cancelled} queued message(s) to them cancelled")
    return changes


def sms_name_allowed(protocol: Protocol, site_id: str, name: str) -> None:
    """Refuse a site name with a forbidden word when it would sign the site's SMS (no
    `sites.<code>.sms_name` in the protocol)."""
    if site_id in protocol.sites:
        return
    words = forbidden_words_in(name, protocol.sms.forbidden_words)
    if words:
        raise EnrolmentError("name", f"{name!r} contains {', '.join(map(repr, words))}, which "
                             f"must never appear in an SMS, and the site's SMS are signed with "
                             f"its name: choose another name or set sites.{site_id}.sms_name "
                             "in the protocol file")


async def update_site(session: AsyncSession, protocol: Protocol, site_id: str, *, reason: str,
                      now: datetime, actor: Actor, name: str | None = None,
                      tz: str | None = None, phone: str | None = None) -> Changes:
    """Correct a site's name, time zone or phone (patients keep their own zones)."""
    why = _reason(reason)
    site = await session.get(Site, site_id.strip())
    if site is None:
        raise EnrolmentError("site", f"no site {site_id.strip()}")
    values: dict[str, Any] = {}
    if name is not None:
        if not name.strip():
            raise EnrolmentError("name", "a site needs a name")
        sms_name_allowed(protocol, site.id, name.strip())
        values["name"] = name.strip()
    if tz is not None:
        values["tz"] = check.timezone(tz)
    if phone is not None:
        values["phone"] = check.phone(phone) if phone.strip() else None
    if not values:
        raise EnrolmentError("update", "nothing to change: give --name, --tz or --phone")
    changes = Changes(site.id)
    _set(session, site, changes, now=now, actor=actor, reason=why, **values)
    return changes

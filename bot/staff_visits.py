"""Staff commands `/move SUBJECT VISIT DATE REASON` and `/done SUBJECT VISIT [DATE]`."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from bot.staff_commands import CommandRouter
from storage.audit import Actor
from storage.models import Patient, Staff
from study import staff_access, visits
from study.replies import Reply
from study.visits import VisitChange, VisitError
from trial.protocol import Protocol

router = CommandRouter("visits")


def _reply(change: VisitChange, moved: bool) -> Reply:
    params: dict[str, object] = {
        "subject": change.subject_id, "visit": change.visit,
        "old": change.old_date.isoformat() if change.old_date else "-",
        "new": change.new_date.isoformat(), "date": change.new_date.isoformat(),
        "start": change.window_start.isoformat(), "end": change.window_end.isoformat()}
    name = "visit.moved" if moved else "visit.marked_done"
    return Reply(name + ("_out_of_window" if change.out_of_window else ""), params)


async def _patient(session: AsyncSession, staff: Staff, subject: str, command: str, *,
                   now: datetime) -> Reply | Patient:
    patient = await staff_access.find_patient(session, staff, subject, command=command, now=now)
    if patient is None:
        return Reply("visit.error_no_patient", {"subject": subject})
    if not staff_access.can_act(staff, patient.site_id):
        return Reply("visit.error_not_allowed")
    return patient


@router.command("move")
async def move(session: AsyncSession, protocol: Protocol, staff: Staff, args: str, *,
               now: datetime) -> list[Reply]:
    """/move SUBJECT VISIT YYYY-MM-DD REASON: reschedule a visit (the reason is required)."""
    parts = args.split(maxsplit=3)
    if len(parts) < 3:
        return [Reply("visit.move_usage")]
    if len(parts) < 4 or not parts[3].strip():
        return [Reply("visit.error_no_reason"), Reply("visit.move_usage")]
    subject, name, day, reason = parts
    try:
        new_date = visits.parse_date(day)
        patient = await _patient(session, staff, subject, "move", now=now)
        if isinstance(patient, Reply):
            return [patient]
        change = await visits.move_visit(session, protocol, patient, name, new_date,
                                         reason=reason, now=now, actor=Actor.staff(staff.id))
    except VisitError as exc:
        return [Reply(exc.message_id, exc.params)]
    return [_reply(change, moved=True)]


@router.command("done")
async def done(session: AsyncSession, protocol: Protocol, staff: Staff, args: str, *,
               now: datetime) -> list[Reply]:
    """/done SUBJECT VISIT [YYYY-MM-DD]: record that a visit took place (today by default)."""
    parts = args.split()
    if len(parts) not in (2, 3):
        return [Reply("visit.done_usage")]
    try:
        day = visits.parse_date(parts[2]) if len(parts) == 3 else None
        patient = await _patient(session, staff, parts[0], "done", now=now)
        if isinstance(patient, Reply):
            return [patient]
        change = await visits.mark_done(session, protocol, patient, parts[1], done_date=day,
                                        now=now, actor=Actor.staff(staff.id))
    except VisitError as exc:
        return [Reply(exc.message_id, exc.params)]
    return [_reply(change, moved=False)]

"""Tick steps of the safety loop: re-escalate unacknowledged alerts; close timed-out
questionnaires; offer the weekly check-in.

Escalation is one transaction per alert step (see study.alerts), so a restart between two steps
neither skips nor repeats one, and two ticks at the same instant page once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.channels import Choice
from messages import catalogue
from storage import outbox
from storage.db import Database
from storage.models import Conversation, Patient
from study import alerts, questionnaire
from study.recipients import patient_route
from study.replies import Reply
from trial.protocol import Protocol

Step = Callable[[Database, Protocol, datetime], Awaitable[int]]
# A check-in missed by more than this (the scheduler was down) is not offered late.
CHECKIN_GRACE = timedelta(hours=6)


async def escalate(db: Database, protocol: Protocol, now: datetime) -> int:
    """Page the next level of every alert whose acknowledgement timeout has passed."""
    total = 0
    while True:
        async with db.write() as session:
            paged = await alerts.escalate_due(session, protocol, now=now, limit=50)
        total += paged
        if paged < 50:
            return total


def _render_choice(choice: Choice, language: str) -> dict[str, str]:
    label = choice.label
    if "." in label and " " not in label:
        label = catalogue.render(label, language)
    return {"label": label, "action": choice.action, "sms_word": choice.sms_word}


async def send_to_patient(session: AsyncSession, patient: Patient, reply: Reply, *, key: str,
                          now: datetime) -> bool:
    """Queue one catalogue reply to a patient by their current route and language."""
    route = patient_route(patient, safety=reply.safety)
    if route is None:
        return False
    language = patient.language if patient.language in catalogue.LOCALES else "zh"
    template = catalogue.template(reply.message_id, language)
    row = await outbox.enqueue(
        session, key=key, channel=route.channel, address=route.address,
        template_id=reply.message_id, template_version=template.version, language=language,
        body=template.render(**reply.params), due_at=now, now=now,
        lane=outbox.SAFETY if reply.safety else outbox.ROUTINE,
        choices=[_render_choice(c, language) for c in reply.choices], patient_id=patient.id)
    return row is not None


async def close_questionnaires(db: Database, protocol: Protocol, now: datetime) -> int:
    """Close timed-out questionnaires: report what was answered, tell the patient politely."""
    async with db.write() as session:
        closed = await questionnaire.expire_due(session, protocol, now=now)
        for patient, replies in closed:
            for n, reply in enumerate(replies):
                await send_to_patient(session, patient, reply, now=now,
                                      key=f"questionnaire:{patient.id}:{now.isoformat()}:{n}")
    return len(closed)


async def offer_checkins(db: Database, protocol: Protocol, now: datetime) -> int:
    """The weekly check-in offer, on the protocol's weekday at its local time (once a day)."""
    reminders = protocol.reminders
    queued = 0
    async with db.write() as session:
        patients = (await session.execute(select(Patient).where(
            Patient.status == "active", Patient.opted_out.is_(False)))).scalars().all()
        busy = set((await session.execute(select(Conversation.patient_id))).scalars().all())
        for patient in patients:
            local = now.astimezone(ZoneInfo(patient.tz))
            offer_at = datetime.combine(local.date(), reminders.checkin_time, local.tzinfo)
            if local.isoweekday() != reminders.checkin_weekday or patient.id in busy \
                    or not offer_at <= local < offer_at + CHECKIN_GRACE \
                    or patient.baseline > local.date():
                continue
            offer = Reply("questionnaire.checkin_offer", choices=(
                Choice("questionnaire.button_start", "report:start", "REPORT"),))
            if await send_to_patient(session, patient, offer, now=now,
                                     key=f"checkin:{patient.id}:{local.date().isoformat()}"):
                queued += 1
    return queued


STEPS: list[tuple[str, Step]] = [
    ("escalation", escalate),
    ("questionnaire_timeouts", close_questionnaires),
    ("checkins", offer_checkins),
]

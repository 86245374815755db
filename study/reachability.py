"""Telegram reachability from what Telegram tells us: a patient who blocks the bot is marked
unreachable there at once (the coordinator told; messages then go by SMS where there is a
number), and one who unblocks it or writes to us again is reachable again.

Becoming reachable (linking, unblocking, writing again) re-arms the patient's open doses: a
dose whose reminder waited for a channel is looked at by the next tick, so a patient who links
after today's dose time but before its follow-up time gets today's reminder at once."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from storage import audit
from storage.audit import Actor
from storage.models import DoseRecord, Patient
from study import alerts
from trial.dose import OPEN_VALUES

MEMBER = "member:"  # the action prefix of a membership event (InboundEvent.action)
BLOCKED = f"{MEMBER}blocked"
UNBLOCKED = f"{MEMBER}unblocked"


async def chat_member(session: AsyncSession, patient: Patient | None, action: str, *,
                      now: datetime) -> str:
    """Apply a membership event of a patient's private chat; the inbound outcome."""
    if patient is None:
        return "member_unknown"
    if action == BLOCKED:
        await blocked(session, patient, now=now)
        return "blocked"
    if action == UNBLOCKED:
        await heard_from(session, patient, now=now, reason="unblocked the bot")
        return "unblocked"
    return "member_other"


async def blocked(session: AsyncSession, patient: Patient, *, now: datetime) -> bool:
    """The patient blocked the bot: unreachable on Telegram, the coordinator told once."""
    if not patient.telegram_reachable:
        return False
    actor = Actor.patient(patient.subject_id)
    audit.change(session, patient, at=now, actor=actor, reason="blocked the bot on Telegram",
                 telegram_reachable=False)
    await alerts.notify_site(
        session, site_id=patient.site_id, patient=patient, kind="unreachable",
        summary=f"{patient.subject_id} blocked the bot on Telegram",
        message_id="delivery.telegram_blocked",
        params={"subject": patient.subject_id},
        now=now, actor=actor)
    return True


async def heard_from(session: AsyncSession, patient: Patient, *, now: datetime,
                     reason: str = "wrote on Telegram") -> bool:
    """The patient can be reached on Telegram again (unblocked, or just wrote to us)."""
    if patient.telegram_reachable or patient.telegram_id is None:
        return False
    changed = audit.change(session, patient, at=now, actor=Actor.patient(patient.subject_id),
                           reason=reason, telegram_reachable=True)
    await rearm_doses(session, patient.id, now=now)
    return changed


async def rearm_doses(session: AsyncSession, patient_id: int, *, now: datetime) -> None:
    """The patient's open doses between their dose time and cut-off are due for a look now (a
    later day's waits for its own time): one that waited
    for a channel is reminded or followed up by the next tick (at most a minute), and one with
    nothing due goes back to its own next time (`study.doses.advance_dose`)."""
    await session.execute(
        update(DoseRecord).where(DoseRecord.patient_id == patient_id,
                                 DoseRecord.state.in_(OPEN_VALUES), DoseRecord.due_at <= now,
                                 DoseRecord.cutoff_at > now, DoseRecord.next_action_at > now)
        .values(next_action_at=now).execution_options(synchronize_session=False))

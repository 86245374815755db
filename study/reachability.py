"""Telegram reachability from what Telegram tells us: a patient who blocks the bot is marked
unreachable there at once (the coordinator told; messages then go by SMS where there is a
number), and one who unblocks it or writes to us again is reachable again."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from storage import audit
from storage.audit import Actor
from storage.models import Patient
from study import alerts

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
    return audit.change(session, patient, at=now, actor=Actor.patient(patient.subject_id),
                        reason=reason, telegram_reachable=True)

"""Reachability from what a channel tells us: a patient who blocks the Telegram bot (or
unfollows on a contact-point channel such as WeChat) is marked unreachable there at once (the
coordinator told; messages then go by another channel where there is one), and one who unblocks
it, follows again or writes to us again is reachable again.

Becoming reachable (linking, unblocking, writing again) re-arms the patient's open doses: a
dose whose reminder waited for a channel is looked at by the next tick, so a patient who links
after today's dose time but before its follow-up time gets today's reminder at once."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from storage import audit
from storage.audit import Actor
from storage.models import ContactPoint, DoseRecord, Patient
from study import alerts, contacts
from study.recipients import contact_point
from trial.dose import OPEN_VALUES

MEMBER = "member:"  # the action prefix of a membership event (InboundEvent.action)
BLOCKED = f"{MEMBER}blocked"
UNBLOCKED = f"{MEMBER}unblocked"


async def chat_member(session: AsyncSession, patient: Patient | None, action: str, *,
                      now: datetime, channel: str = "telegram") -> str:
    """Apply a membership event of a patient's private chat (Telegram) or of their contact
    point on another channel (a WeChat unfollow or follow); the inbound outcome."""
    if patient is None:
        return "member_unknown"
    if channel != "telegram":
        point = contact_point(patient, channel)
        if point is None:
            return "member_unknown"
        if action == BLOCKED:
            await contact_left(session, patient, point, now=now)
            return "blocked"
        if action == UNBLOCKED:
            await contact_heard_from(session, patient, point, now=now,
                                     reason=f"followed again on {channel}")
            return "unblocked"
        return "member_other"
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


async def contact_left(session: AsyncSession, patient: Patient, point: ContactPoint, *,
                       now: datetime, reason: str = "", actor: Actor | None = None) -> bool:
    """The patient left a contact-point channel (unfollowed, or the provider says they cannot
    be reached there): unreachable on it, the coordinator told once."""
    if not point.reachable:
        return False
    actor = actor or Actor.patient(patient.subject_id)
    audit.change(session, point, at=now, actor=actor,
                 reason=reason or f"unfollowed on {point.channel}", reachable=False)
    await alerts.notify_site(
        session, site_id=patient.site_id, patient=patient, kind="unreachable",
        summary=f"{patient.subject_id} left {point.channel}",
        message_id="delivery.unfollowed",
        params={"subject": patient.subject_id, "channel": point.channel},
        now=now, actor=actor)
    return True


async def contact_heard_from(session: AsyncSession, patient: Patient, point: ContactPoint, *,
                             now: datetime, reason: str = "") -> bool:
    """The patient wrote (or followed again) on a contact-point channel: reachable there
    again, today's open dose re-armed; the 48-hour reply window noted either way."""
    contacts.wrote(point, now)
    if point.reachable:
        return False
    audit.change(session, point, at=now, actor=Actor.patient(patient.subject_id),
                 reason=reason or f"wrote on {point.channel}", reachable=True)
    await rearm_doses(session, patient.id, now=now)
    return True


async def rearm_doses(session: AsyncSession, patient_id: int, *, now: datetime) -> None:
    """The patient's open doses between their dose time and cut-off are due for a look now (a
    later day's waits for its own time): one that waited
    for a channel is reminded or followed up by the next tick (at most a minute), and one with
    nothing due goes back to its own next time (`study.dose_planner.advance_dose`)."""
    await session.execute(
        update(DoseRecord).where(DoseRecord.patient_id == patient_id,
                                 DoseRecord.state.in_(OPEN_VALUES), DoseRecord.due_at <= now,
                                 DoseRecord.cutoff_at > now, DoseRecord.next_action_at > now)
        .values(next_action_at=now).execution_options(synchronize_session=False))

"""STOP pauses messages to a patient and tells the coordinator (never a withdrawal); START
resumes; HELP gives the site's contact. A channel that can no longer reach a patient (a blocked
bot, an invalid number, reported by a status callback) is marked and the coordinator told."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from storage import audit, outbox
from storage.audit import Actor
from storage.models import OutboundMessage, Patient, Site
from study import alerts, outgoing, reachability
from study.recipients import contact_point, patient_route
from study.replies import Reply
from trial.protocol import Protocol


async def opt_out(session: AsyncSession, patient: Patient, *, channel: str, now: datetime,
                  source: str) -> list[Reply]:
    """Pause every routine message to the patient and alert the coordinator (idempotent)."""
    if patient.opted_out:
        return [Reply("chat.stopped")]
    actor = Actor.patient(patient.subject_id)
    audit.change(session, patient, at=now, actor=actor, reason=f"opt-out ({source})",
                 opted_out=True)
    await alerts.notify_site(
        session, site_id=patient.site_id, patient=patient, kind="opt_out",
        summary=f"{patient.subject_id} opted out via {channel} ({source})",
        message_id="chat.staff_opt_out",
        params={"subject_id": patient.subject_id, "channel": channel}, now=now, actor=actor)
    return [Reply("chat.stopped")]


async def opt_in(session: AsyncSession, patient: Patient, *, now: datetime,
                 source: str) -> list[Reply]:
    """Resume messages after an opt-out."""
    changes: dict[str, object] = {"opted_out": False}
    if source == "sms":
        changes["sms_reachable"] = True  # the number works: it just wrote to us
    audit.change(session, patient, at=now, actor=Actor.patient(patient.subject_id),
                 reason=f"opt-in ({source})", **changes)
    return [Reply("chat.resumed")]


async def help_reply(session: AsyncSession, patient: Patient) -> list[Reply]:
    """The site's contact, so the patient can reach a person."""
    site = await session.get(Site, patient.site_id)
    if site is not None and site.phone:
        return [Reply("chat.help", {"phone": site.phone})]
    return [Reply("chat.help_no_phone")]


async def channel_unreachable(session: AsyncSession, patient: Patient, channel: str, *,
                              now: datetime, reason: str, opted_out: bool = False) -> bool:
    """A provider says the patient cannot be reached on a channel (403 blocked, 21610, 21211).

    Marks the channel, alerts the coordinator once, and returns whether anything changed. A
    21610 (the patient texted STOP at the carrier) is also an opt-out.
    """
    actor = Actor.system("dispatcher")
    if opted_out:
        if patient.opted_out:
            return False
        audit.change(session, patient, at=now, actor=actor, reason=reason, opted_out=True)
        await alerts.notify_site(
            session, site_id=patient.site_id, patient=patient, kind="opt_out",
            summary=f"{patient.subject_id} opted out at the provider ({reason})",
            message_id="delivery.opted_out",
            params={"subject": patient.subject_id, "channel": channel}, now=now, actor=actor)
        return True
    if channel not in ("telegram", "sms"):
        point = contact_point(patient, channel)  # WeChat: 43004, the user unfollowed
        return point is not None and await reachability.contact_left(
            session, patient, point, now=now, reason=reason, actor=actor)
    field = "telegram_reachable" if channel == "telegram" else "sms_reachable"
    if not getattr(patient, field):
        return False
    audit.change(session, patient, at=now, actor=actor, reason=reason, **{field: False})
    await alerts.notify_site(
        session, site_id=patient.site_id, patient=patient, kind="unreachable",
        summary=f"{patient.subject_id} unreachable on {channel} ({reason})",
        message_id="delivery.unreachable",
        params={"subject": patient.subject_id, "channel": channel, "reason": reason},
        now=now, actor=actor)
    return True


async def message_undeliverable(session: AsyncSession, row: OutboundMessage, *, now: datetime,
                                reason: str, opted_out: bool = False, mark: bool = True,
                                protocol: Protocol | None = None) -> bool:
    """A provider says a patient's message can never reach them on its channel (when sending
    or later, by a delivery callback): the channel is marked as `channel_unreachable` does
    (unless `mark` is False: this message failed, the number may still work), and a safety
    message goes again by the patient's other route, the coordinator told (`protocol`: the
    copy's signature when it goes by SMS). True if rows were queued."""
    patient = (await session.get(Patient, row.patient_id, with_for_update=True)
               if row.patient_id is not None else None)
    if patient is None:
        return False
    queued = mark and await channel_unreachable(
        session, patient, row.channel, now=now, reason=reason, opted_out=opted_out)
    if row.lane != outbox.SAFETY:
        return queued
    route = patient_route(patient, safety=True)
    again = None
    if route is not None and route.channel != row.channel:
        again = await outgoing.queue_copy(
            session, row, route, key=f"{row.dedupe_key}:via:{route.channel}"[:160], now=now,
            protocol=protocol)
    if not queued:  # nobody was told by the channel's marking: a safety message failed
        await alerts.notify_site(
            session, site_id=patient.site_id, patient=patient, kind="delivery_failed",
            summary=f"{patient.subject_id}: safety message {row.id} failed by {row.channel}"
                    f" ({reason})" + ("; sent again" if again is not None else ""),
            message_id="delivery.safety_rerouted" if again is not None
            else "delivery.safety_undelivered",
            params={"subject": patient.subject_id, "channel": row.channel, "reason": reason},
            now=now, actor=Actor.system("dispatcher"))
        queued = True
    return again is not None or queued

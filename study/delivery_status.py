"""Delivery status reports and what they mean for the patient, in no provider's words.

A channel adapter reads its provider's report (Twilio's status callback) into the outbox's state, a
detail and a `messages.channel.DeliveryFate`; this unit of work records it and acts on it. A
status moves a message only forward (`storage.outbox.record_status`); its consequences (an
opted-out or unreachable number, a safety message sent again by the patient's other channel,
the coordinator told) follow only from a status the outbox accepted, so a late `failed` after
`delivered` changes nothing. A report for a send still in flight is kept by the outbox and
applied by `apply_early` once the send is recorded, read by the channel that sent it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from messages.channel import DeliveryFate, ReadsStatus
from storage import outbox
from storage.models import OutboundMessage
from study import optout


async def apply(session: AsyncSession, *, provider_id: str, status: str, detail: str,
                fate: DeliveryFate, now: datetime, message_id: int | None = None) -> bool:
    """Record one status report and, if the outbox accepted it, its consequences; True if
    follow-up rows were queued (a rerouted safety message, coordinator notices)."""
    if not await outbox.record_status(session, provider_id=provider_id, status=status,
                                      now=now, detail=detail, message_id=message_id):
        return False
    if not fate.failed:
        return False
    row = (await session.execute(select(OutboundMessage).where(
        OutboundMessage.provider_id == provider_id))).scalars().first()
    if row is None:
        return False
    if fate.unreachable:
        return await optout.message_undeliverable(session, row, now=now, reason=fate.reason,
                                                  opted_out=fate.opted_out)
    if row.lane == outbox.SAFETY:
        # The number may work tomorrow (a handset off), but this message must arrive now.
        return await optout.message_undeliverable(session, row, now=now, reason=fate.reason,
                                                  mark=False)
    return False


async def apply_early(session: AsyncSession, message_ids: Iterable[int], *, now: datetime,
                      channels: Mapping[str, object]) -> bool:
    """Apply the reports kept while these messages were in flight, each read by the channel
    that sent its message; True if rows were queued."""
    kept = await outbox.early_callbacks(session, message_ids)
    if not kept:
        return False
    rows = (await session.execute(select(OutboundMessage.id, OutboundMessage.channel).where(
        OutboundMessage.id.in_({item[0] for item in kept})))).all()
    channel_of: dict[int, str] = {row[0]: row[1] for row in rows}
    queued = False
    for message_id, provider_id, status, detail in kept:
        reader = channels.get(channel_of.get(message_id, ""))
        fate = reader.read_status(status, detail) if isinstance(reader, ReadsStatus) \
            else DeliveryFate()
        queued |= await apply(session, provider_id=provider_id, status=status, detail=detail,
                              fate=fate, now=now)
    return queued

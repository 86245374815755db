"""Twilio delivery status callbacks and what they mean for the patient.

A status moves a message only forward (`storage.outbox.record_status`); its consequences (an
opted-out or unreachable number, a safety message sent again by the patient's other channel,
the coordinator told) follow only from a status the outbox accepted, so a late `failed` after
`delivered` changes nothing. A callback for a send still in flight is kept by the outbox and
applied here once the send is recorded.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage import outbox
from storage.models import OutboundMessage
from study import optout

# Twilio error codes that say something about the number, not just this message: refused when
# sending (21xxx, REST) or reported later by a delivery status callback (300xx).
OPTED_OUT = 21610
UNREACHABLE = frozenset({21211, 21408, 21612, 21614, 21635, 30005, 30006})
FAILED = frozenset({"failed", "undelivered"})


def error_code(detail: str) -> int:
    """The Twilio ErrorCode in a callback's detail ("ErrorCode 30005"), or 0."""
    word = detail.removeprefix("ErrorCode ").split(" ", 1)[0]
    return int(word) if word.isdigit() else 0


async def apply(session: AsyncSession, *, provider_id: str, status: str, code: int,
                now: datetime, message_id: int | None = None) -> bool:
    """Record one status callback and, if the outbox accepted it, its consequences; True if
    follow-up rows were queued (a rerouted safety message, coordinator notices)."""
    detail = f"ErrorCode {code}" if code else ""
    if not await outbox.record_status(session, provider_id=provider_id, status=status,
                                      now=now, detail=detail, message_id=message_id):
        return False
    if status not in FAILED:
        return False
    row = (await session.execute(select(OutboundMessage).where(
        OutboundMessage.provider_id == provider_id))).scalars().first()
    if row is None:
        return False
    reason = f"twilio error {code}" if code else f"twilio {status}"
    if code == OPTED_OUT or code in UNREACHABLE:
        return await optout.message_undeliverable(session, row, now=now, reason=reason,
                                                  opted_out=code == OPTED_OUT)
    if row.lane == outbox.SAFETY:
        # The number may work tomorrow (30003: handset off), but this message must arrive now.
        return await optout.message_undeliverable(session, row, now=now, reason=reason,
                                                  mark=False)
    return False


async def apply_early(session: AsyncSession, message_ids: Iterable[int], *,
                      now: datetime) -> bool:
    """Apply the callbacks kept while these messages were in flight; True if rows were queued."""
    queued = False
    for _message_id, provider_id, status, detail in await outbox.early_callbacks(
            session, message_ids):
        queued |= await apply(session, provider_id=provider_id, status=status,
                              code=error_code(detail), now=now)
    return queued

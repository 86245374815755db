"""What keeps input flowing whatever arrives, on every channel.

An event whose handling fails for a reason that waiting cannot mend (a value the database
refuses, a bug) is tried `TRIES` times, then stored as failed, told to the admins and passed, so
the messages behind it are handled. A database that is down is different: passing would lose the
message, so the caller keeps it (the poller does not move its offset, the webhook answers 500).
A payload no adapter can read is stored as it came, with the outcome `unparsable`.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError

from bot.conversation import Conversation, Handled, InboundEvent
from messages import catalogue
from storage.db import Database, insert_new
from storage.models import InboundMessage, Staff
from study import outgoing
from study.recipients import staff_route

log = logging.getLogger(__name__)

TRIES = 3
UNPARSABLE = "unparsable"
FAILED = "failed"


def unwell(exc: BaseException) -> bool:
    """The database (or the way to it) is down: waiting helps, passing would lose a message."""
    return isinstance(exc, OperationalError | InterfaceError | DisconnectionError | OSError
                      | TimeoutError)


async def handle_firmly(conversation: Conversation, event: InboundEvent, *,
                        tries: int = TRIES, pause: float = 0.2) -> Handled | None:
    """`Conversation.handle`, tried `tries` times; then the event is stored as failed, the
    admins are told, and None returned. Raises only while the database is unwell."""
    for attempt in range(1, tries + 1):
        try:
            return await conversation.handle(event)
        except Exception as exc:
            if unwell(exc):
                raise
            if attempt == tries:
                log.error("%s message %s failed %d times; stored as failed and passed",
                          event.channel, event.external_id, tries, exc_info=True)
            else:
                log.warning("%s message %s failed (try %d of %d): %s", event.channel,
                            event.external_id, attempt, tries, exc)
                await asyncio.sleep(pause * attempt)
    await mark_failed(conversation.db, event, now=conversation.clock.now())
    return None


async def store_raw(db: Database, *, channel: str, external_id: str, raw: Any, outcome: str,
                    now: datetime, sender: str = "", text: str = "") -> int:
    """Store what could not be read or handled as it came (cleaned of what no database
    stores), handled, with its outcome; once per (channel, external_id). Returns the row id."""
    event = InboundEvent(channel, external_id, sender, text, None, now,
                         {"raw": raw}).storable()
    async with db.write() as session:
        new_id = (await session.execute(
            insert_new(session, InboundMessage, unique=["channel", "external_id"]).values(
                channel=channel, external_id=event.external_id[:64], sender=event.sender[:64],
                text=event.text, payload={**event.payload, "action": None},
                received_at=now, handled_at=now, outcome=outcome)
            .returning(InboundMessage.id))).scalar_one_or_none()
        if new_id is not None:
            if outcome == FAILED:
                await _tell_admins(session, channel, int(new_id), now)
            return int(new_id)
        return int((await session.execute(select(InboundMessage.id).where(
            InboundMessage.channel == channel,
            InboundMessage.external_id == event.external_id[:64]))).scalar_one())


async def mark_failed(db: Database, event: InboundEvent, *, now: datetime) -> int:
    """The stored row of an event that cannot be handled, marked failed (stored raw if it
    could not even be stored); the admins are told once."""
    event = event.storable()
    async with db.write() as session:
        row = (await session.execute(select(InboundMessage).where(
            InboundMessage.channel == event.channel,
            InboundMessage.external_id == event.external_id[:64]))).scalars().first()
        if row is not None:
            if row.handled_at is None:
                await session.execute(update(InboundMessage).where(
                    InboundMessage.id == row.id).values(handled_at=now, outcome=FAILED)
                    .execution_options(synchronize_session=False))
                await _tell_admins(session, event.channel, row.id, now)
            return row.id
    return await store_raw(db, channel=event.channel, external_id=event.external_id,
                           raw={"text": event.text, **event.stored_payload()},
                           outcome=FAILED, now=now,
                           sender=event.sender)


async def _tell_admins(session: Any, channel: str, inbound_id: int, now: datetime) -> None:
    admins = (await session.execute(select(Staff).where(
        Staff.active.is_(True), Staff.role == "admin").order_by(Staff.id))).scalars().all()
    for admin in admins:
        routes = staff_route(admin)
        if not routes:
            continue
        recipient = outgoing.Recipient.staff(admin, routes[0])
        await outgoing.queue(session, recipient, outgoing.Reply("delivery.inbound_failed", {
            "inbound": inbound_id, "tries": TRIES,
            "channel": _channel_name(channel, recipient.reads)}),
            key=f"inbound_failed:{inbound_id}:{admin.id}", now=now)


def _channel_name(channel: str, language: str) -> str:
    try:
        return catalogue.render(f"delivery.channel_{channel}", language)
    except catalogue.MissingMessageError:
        return channel

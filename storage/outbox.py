"""The outbox: messages are planned as rows with a unique key, then claimed and sent.

Planning the same message twice (two ticks, two workers) inserts one row: the dedupe key
(e.g. `dose:reminder:<dose id>`) is unique.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Table,
    and_,
    bindparam,
    case,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from storage.db import insert_new
from storage.models import DeliveryEvent, OutboundMessage
from trial.delivery import kind_of

SAFETY = "safety"
ROUTINE = "routine"
# Key in `session.info`: safety-lane rows queued in this unit of work, so whoever commits it
# can wake the dispatcher without asking the database.
SAFETY_QUEUED = "outbox.safety_queued"


def safety_queued(session: AsyncSession) -> int:
    """How many safety-lane rows this session has queued so far (never decreases)."""
    return int(session.info.get(SAFETY_QUEUED, 0))


def _count_safety(session: AsyncSession, queued: int) -> None:
    if queued:
        session.info[SAFETY_QUEUED] = safety_queued(session) + queued


@dataclass(frozen=True)
class Planned:
    """One message to queue, with the arguments of `enqueue` (the dedupe key is `key`)."""

    key: str
    channel: str
    address: str
    template_id: str
    template_version: str
    language: str
    body: str
    due_at: datetime
    lane: str = ROUTINE
    choices: list[dict[str, str]] | None = None
    image: bytes | None = None
    patient_id: int | None = None
    staff_id: int | None = None
    dose_id: int | None = None
    alert_id: int | None = None
    visit_id: int | None = None
    kind: str | None = None  # reply, dose, alert...: by default the key's first part
    # The text before its channel's form when `body` is in one (an SMS), else None.
    plain_text: str | None = None

    def values(self, now: datetime) -> dict[str, Any]:
        """The outbox row: queued, no attempt yet, created `now`."""
        return {
            "dedupe_key": self.key, "channel": self.channel, "address": self.address,
            "template_id": self.template_id, "template_version": self.template_version,
            "language": self.language, "body": self.body, "plain_text": self.plain_text,
            "due_at": self.due_at,
            "lane": self.lane, "choices": self.choices or [], "image": self.image,
            "patient_id": self.patient_id, "staff_id": self.staff_id, "dose_id": self.dose_id,
            "alert_id": self.alert_id, "visit_id": self.visit_id,
            "kind": self.kind or kind_of(self.key),
            "status": QUEUED, "attempts": 0, "created_at": now,
        }


def _insert_new(session: AsyncSession) -> Any:
    """INSERT ... ON CONFLICT (dedupe_key) DO NOTHING RETURNING id: a key queued once stays."""
    # The table, not the mapped class: a batch of a day's reminders skips the ORM's bulk path.
    table = cast(Table, OutboundMessage.__table__)
    return insert_new(session, table, unique=["dedupe_key"]).returning(table.c.id)


async def enqueue(session: AsyncSession, *, key: str, channel: str, address: str,
                  template_id: str, template_version: str, language: str, body: str,
                  due_at: datetime, now: datetime, lane: str = ROUTINE,
                  choices: list[dict[str, str]] | None = None, image: bytes | None = None,
                  patient_id: int | None = None, staff_id: int | None = None,
                  dose_id: int | None = None, alert_id: int | None = None,
                  visit_id: int | None = None, kind: str | None = None,
                  plain_text: str | None = None) -> int | None:
    """Insert a message unless one with the same key exists; return its id, or None if it
    existed. `kind` (what the delivery policy reads): by default the key's first part."""
    planned = Planned(key, channel, address, template_id, template_version, language, body,
                      due_at, lane, choices, image, patient_id, staff_id, dose_id, alert_id,
                      visit_id, kind, plain_text)
    statement = _insert_new(session).values(**planned.values(now))
    new_id = (await session.execute(statement)).scalar_one_or_none()
    if new_id is None:
        return None
    _count_safety(session, lane == SAFETY)
    return int(new_id)


async def enqueue_many(session: AsyncSession, messages: Iterable[Planned], *,
                       now: datetime) -> list[int]:
    """`enqueue` for a batch in one statement (same rows, same rule: a key that exists is not
    queued again); the ids of the rows inserted."""
    batch = list(messages)
    if not batch:
        return []
    ids = list((await session.execute(
        _insert_new(session), [message.values(now) for message in batch])).scalars().all())
    if ids:  # may count a safety row that existed already: a wake too many is harmless
        _count_safety(session, sum(message.lane == SAFETY for message in batch))
    return ids


# --- Claiming and settling (the dispatcher's side) -------------------------------------------
#
# Life of a row: queued -> sending (leased to one claim, `leased_by` = its lease token) -> sent ->
# delivered; or failed / unknown / cancelled / dropped. A worker that dies leaves its rows in
# `sending` until `lease_until` passes; the next claim takes them again (they were in flight, so
# they may be sent twice: the only duplicates the outbox allows). Every transition of a leased row
# is an UPDATE guarded by `leased_by`, so a worker that finishes after its lease was taken over
# changes nothing.

QUEUED = "queued"
SENDING = "sending"
SENT = "sent"
DELIVERED = "delivered"
READ = "read"
FAILED = "failed"
UNDELIVERED = "undelivered"
UNKNOWN = "unknown"  # the provider may have it (timeout after the request was written)
CANCELLED = "cancelled"  # not sent on purpose (recipient paused, withdrawn, opted out)
DROPPED = "dropped"  # not sent: the daily SMS cap kept a more important message
# Event of a status callback that came while its message was in flight (kept for later).
EARLY_CALLBACK = "early callback"
# Event of a row of unknown fate claimed again (to be confirmed with the provider or resent).
RECHECK = "recheck"

# Forward-only order of delivery statuses; terminal ones never change again.
_RANK = {QUEUED: 0, SENDING: 1, UNKNOWN: 1, SENT: 2, DELIVERED: 3, READ: 4}
TERMINAL = frozenset({FAILED, UNDELIVERED, CANCELLED, DROPPED})
# The states a provider's delivery report may say (each adapter reads its provider's words
# into these: bot/channels/twilio/vocabulary.py).
REPORTED = frozenset({SENT, DELIVERED, READ, FAILED, UNDELIVERED, CANCELLED})


def note(session: AsyncSession, message_id: int, status: str, now: datetime,
         detail: str = "") -> None:
    """Append one delivery event to a message's history."""
    session.add(DeliveryEvent(message_id=message_id, status=status, at=now, detail=detail[:2000]))


async def cancel_queued(session: AsyncSession, where: ColumnElement[bool], *, now: datetime,
                        reason: str) -> int:
    """Cancel the queued (not yet claimed) messages matching `where`; how many. A row a
    dispatcher claimed or sent meanwhile is left as it is."""
    cancelled = list((await session.execute(
        update(OutboundMessage).where(where, OutboundMessage.status == QUEUED)
        .values(status=CANCELLED, lease_until=None, leased_by=None)
        .returning(OutboundMessage.id))).scalars())
    for message_id in cancelled:
        note(session, message_id, CANCELLED, now, reason)
    return len(cancelled)


async def claim(session: AsyncSession, *, lane: str, channels: Iterable[str], now: datetime,
                limit: int, first: Sequence[str] = (),
                unknown_below: int | None = None) -> list[OutboundMessage]:
    """Lock up to `limit` rows of a lane that are due, or whose lease expired (oldest first;
    rows whose template id starts with one of `first` before the others, e.g. the replies that
    say call 120 and alert pages in the safety lane).

    `unknown_below`: rows of unknown fate are claimed too once due, while they have had fewer
    attempts than this (the safety lane: they are confirmed with the provider or sent again).

    PostgreSQL: `FOR UPDATE SKIP LOCKED`, so concurrent claims never wait for nor take each
    other's rows. SQLite: the write transaction is `BEGIN IMMEDIATE`, so claims are serialised.
    The caller screens the rows and then calls `lease` in the same transaction.
    """
    ways = [and_(OutboundMessage.status == QUEUED, OutboundMessage.due_at <= now),
            and_(OutboundMessage.status == SENDING, OutboundMessage.lease_until < now)]
    if unknown_below is not None:
        ways.append(and_(OutboundMessage.status == UNKNOWN, OutboundMessage.due_at <= now,
                         OutboundMessage.attempts < unknown_below))
    due = or_(*ways)
    order: list[Any] = [OutboundMessage.due_at, OutboundMessage.id]
    if first:
        order.insert(0, case((or_(*(OutboundMessage.template_id.startswith(prefix)
                                    for prefix in first)), 0), else_=1))
    statement = (select(OutboundMessage)
                 .where(OutboundMessage.lane == lane, due,
                        OutboundMessage.channel.in_(list(channels)))
                 .order_by(*order)
                 .limit(limit)
                 .with_for_update(skip_locked=True))
    rows = list((await session.execute(statement)).scalars().all())
    for row in rows:
        if row.status == SENDING:
            note(session, row.id, "reclaimed", now, f"lease of {row.leased_by} expired")
        elif row.status == UNKNOWN:
            note(session, row.id, RECHECK, now, "fate unknown: confirm or send again")
    return rows


def lease(rows: Iterable[OutboundMessage], *, token: str, now: datetime,
          until: datetime) -> None:
    """Lease claimed rows to one claim: each is now in flight and one more attempt."""
    for row in rows:
        row.status, row.leased_by, row.lease_until = SENDING, token, until
        row.attempts += 1


def settle(session: AsyncSession, row: OutboundMessage, *, status: str, now: datetime,
           reason: str, due_at: datetime | None = None) -> None:
    """Put a claimed (locked, not leased) row aside: cancelled, dropped, or queued for later."""
    row.status, row.leased_by, row.lease_until = status, None, None
    if due_at is not None:
        row.due_at = due_at
    if status != QUEUED:
        row.last_error = reason
    note(session, row.id, "held" if status == QUEUED else status, now, reason)


async def _finish(session: AsyncSession, *, message_id: int, token: str, now: datetime,
                  event: str, detail: str = "", **values: Any) -> bool:
    """Move a leased row on, only if `token` still holds its lease; log the event."""
    statement = (update(OutboundMessage)
                 .where(OutboundMessage.id == message_id, OutboundMessage.leased_by == token,
                        OutboundMessage.status == SENDING)
                 .values(leased_by=None, lease_until=None, **values)
                 .execution_options(synchronize_session=False))
    result = await session.execute(statement)
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return False
    note(session, message_id, event, now, detail)
    return True


async def complete(session: AsyncSession, *, message_id: int, token: str, provider_id: str,
                   status: str, now: datetime) -> bool:
    """The provider accepted the message: store its id; False if the lease was lost."""
    return bool(await complete_many(session, [(message_id, token, provider_id, status)],
                                    now=now))


async def complete_many(session: AsyncSession, sends: Sequence[tuple[int, str, str, str]], *,
                        now: datetime) -> set[int]:
    """Record many accepted sends `(message_id, token, provider_id, status)` at once; return the
    ids recorded (a send whose lease was taken over is left to its new owner)."""
    if not sends:
        return set()
    table = cast(Table, OutboundMessage.__table__)
    # Lock the rows first, so the lease check and the update see the same state.
    held = {row_id: (leased_by, status) for row_id, leased_by, status in (await session.execute(
        select(table.c.id, table.c.leased_by, table.c.status)
        .where(table.c.id.in_([s[0] for s in sends])).with_for_update())).all()}
    mine = [s for s in sends if held.get(s[0]) == (s[1], SENDING)]
    if mine:
        finals = [DELIVERED if s[3] == DELIVERED else SENT for s in mine]
        await session.execute(
            update(table).where(table.c.id == bindparam("b_id"))
            .values(status=bindparam("b_status"), provider_id=bindparam("b_provider"),
                    sent_at=now, leased_by=None, lease_until=None, last_error=None),
            [{"b_id": s[0], "b_status": final, "b_provider": s[2]}
             for s, final in zip(mine, finals, strict=True)])
        await session.execute(insert(cast(Table, DeliveryEvent.__table__)), [
            {"message_id": s[0], "status": final, "at": now, "detail": f"provider {s[2]}"}
            for s, final in zip(mine, finals, strict=True)])
    return {s[0] for s in mine}


async def fail(session: AsyncSession, *, message_id: int, token: str, now: datetime,
               error: str, status: str = FAILED, due_at: datetime | None = None) -> bool:
    """Give up on a message (`failed`), or leave it for a status callback or operator
    (`unknown`; `due_at`: when a safety row of unknown fate is looked at again); False if the
    lease was lost."""
    extra: dict[str, Any] = {} if due_at is None else {"due_at": due_at}
    return await _finish(session, message_id=message_id, token=token, now=now, event=status,
                         detail=error, status=status, last_error=error, **extra)


async def retry(session: AsyncSession, *, message_id: int, token: str, now: datetime,
                error: str, due_at: datetime, count: bool = True) -> bool:
    """A transient failure: queue the message again for `due_at`; False if the lease was lost.

    `count=False` (the provider asked us to wait) gives the attempt back: waiting as told is
    not the message's failure.
    """
    extra: dict[str, Any] = {} if count else {"attempts": OutboundMessage.attempts - 1}
    return await _finish(session, message_id=message_id, token=token, now=now, event="retry",
                         detail=f"{error}; next attempt {due_at.isoformat()}", status=QUEUED,
                         due_at=due_at, last_error=error, **extra)


async def release(session: AsyncSession, *, message_id: int, token: str, now: datetime,
                  due_at: datetime, reason: str) -> bool:
    """Hand back a leased row that was never sent (shutdown, rate-limit wait): no attempt used."""
    return await _finish(session, message_id=message_id, token=token, now=now, event="held",
                         detail=reason, status=QUEUED, due_at=due_at,
                         attempts=OutboundMessage.attempts - 1)


@dataclass(frozen=True)
class Unconfirmed:
    """A lane's messages of unknown fate (the provider may or may not have them): how many,
    and since when the oldest has been unknown (its first `unknown` event)."""

    count: int
    since: datetime


async def unconfirmed(session: AsyncSession) -> dict[str, Unconfirmed]:
    """The rows now `unknown`, by lane (a lane with none is left out)."""
    first = (select(DeliveryEvent.message_id, func.min(DeliveryEvent.at).label("at"))
             .join(OutboundMessage, OutboundMessage.id == DeliveryEvent.message_id)
             .where(OutboundMessage.status == UNKNOWN, DeliveryEvent.status == UNKNOWN)
             .group_by(DeliveryEvent.message_id).subquery())
    since = func.min(func.coalesce(first.c.at, OutboundMessage.created_at))
    found = await session.execute(
        select(OutboundMessage.lane, func.count(), since)
        .outerjoin(first, first.c.message_id == OutboundMessage.id)
        .where(OutboundMessage.status == UNKNOWN).group_by(OutboundMessage.lane))
    return {lane: Unconfirmed(int(count), oldest) for lane, count, oldest in found}


async def reclaim(session: AsyncSession, *, now: datetime) -> int:
    """Queue again every row whose lease expired (its worker died); return how many.

    `claim` takes such rows by itself; this is for an operator or a sweep. Locked rows are
    skipped, so it never waits for (nor deadlocks with) a worker's transaction.
    """
    rows = (await session.execute(
        select(OutboundMessage)
        .where(OutboundMessage.status == SENDING, OutboundMessage.lease_until < now)
        .with_for_update(skip_locked=True))).scalars().all()
    for row in rows:
        note(session, row.id, "reclaimed", now, f"lease of {row.leased_by} expired")
        row.status, row.leased_by, row.lease_until = QUEUED, None, None
    return len(rows)


async def record_status(session: AsyncSession, *, provider_id: str, status: str, now: datetime,
                        detail: str = "", message_id: int | None = None) -> bool:
    """Apply a provider's status callback, its status in the outbox's words (`REPORTED`; any
    other word is noted as unrecognised); True if the message's status moved.

    Statuses only move forward (queued < sent < delivered < read); failed and undelivered are
    terminal, and never replace delivered. Callbacks arriving out of order or twice are logged
    as delivery events and change nothing. `message_id` (carried in the callback URL) finds a
    message whose send timed out before the provider's id came back (status `unknown`).
    """
    row = (await session.execute(
        select(OutboundMessage).where(OutboundMessage.provider_id == provider_id)
        .with_for_update())).scalars().first()
    if row is None and message_id is not None:
        row = (await session.execute(
            select(OutboundMessage).where(OutboundMessage.id == message_id,
                                          OutboundMessage.provider_id.is_(None))
            .with_for_update())).scalars().first()
        if row is not None:
            row.provider_id = provider_id
    if row is None:
        return False
    new = status if status in REPORTED else None
    if new is None:
        note(session, row.id, "callback", now, f"unrecognised status {status!r} {detail}")
        return False
    current = row.status
    if current in (QUEUED, SENDING):
        # In a worker's hands: kept, and applied once the send is recorded (`early_callbacks`).
        note(session, row.id, EARLY_CALLBACK, now, f"{provider_id} {status} {detail}".strip())
        return False
    if current in TERMINAL:
        moved = False  # settled
    elif new in TERMINAL:
        moved = _RANK.get(current, 0) < _RANK[DELIVERED]
    else:
        moved = _RANK[new] > _RANK.get(current, 0)
    if moved:
        row.status = new
        if current == UNKNOWN and row.sent_at is None:
            row.sent_at = now
        if new in TERMINAL:
            row.last_error = detail or status
    note(session, row.id, new if moved else "callback",
           now, detail if moved else f"{status} ignored after {current} {detail}".strip())
    return moved


async def early_callbacks(session: AsyncSession, message_ids: Iterable[int]
                          ) -> list[tuple[int, str, str, str]]:
    """The status callbacks kept while these messages were in flight, oldest first:
    `(message_id, provider_id, status, detail)`."""
    ids = list(message_ids)
    if not ids:
        return []
    events = (await session.execute(
        select(DeliveryEvent.message_id, DeliveryEvent.detail)
        .where(DeliveryEvent.message_id.in_(ids), DeliveryEvent.status == EARLY_CALLBACK)
        .order_by(DeliveryEvent.id))).all()
    kept = []
    for message_id, detail in events:
        provider_id, status, rest = [*detail.split(" ", 2), "", ""][:3]
        kept.append((message_id, provider_id, status, rest))
    return kept


async def requeue_unknown(session: AsyncSession, *, message_id: int, now: datetime,
                          reason: str) -> bool:
    """An operator decided a message of unknown fate was not received: send it again."""
    result = await session.execute(
        update(OutboundMessage)
        .where(OutboundMessage.id == message_id, OutboundMessage.status == UNKNOWN)
        .values(status=QUEUED, due_at=now)
        .execution_options(synchronize_session=False))
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return False
    note(session, message_id, "requeued", now, reason)
    return True


@dataclass(frozen=True)
class UnknownFate:
    """A message whose send may or may not have reached the provider, as operators see it."""

    row: OutboundMessage
    attempted_at: datetime | None  # when its last send was left unknown


async def of_unknown_fate(session: AsyncSession) -> list[UnknownFate]:
    """Every message in state `unknown`, oldest first, with the time its fate became unknown."""
    last = (select(DeliveryEvent.message_id, func.max(DeliveryEvent.at).label("at"))
            .where(DeliveryEvent.status == UNKNOWN).group_by(DeliveryEvent.message_id)
            .subquery())
    found = (await session.execute(
        select(OutboundMessage, last.c.at)
        .outerjoin(last, last.c.message_id == OutboundMessage.id)
        .where(OutboundMessage.status == UNKNOWN).order_by(OutboundMessage.id))).all()
    return [UnknownFate(row, at) for row, at in found]

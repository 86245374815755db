"""`engage outbox unknown` lists the messages whose send may or may not have reached the
provider; `engage outbox requeue ID` sends one of them again (audited).

A send that timed out after its request was written is left `unknown`: the dispatcher never
resends a routine one blindly. A safety one is confirmed with the provider or sent again within
a minute, and the coordinator is told when that fails; what is left is for an operator.
"""

from __future__ import annotations

import argparse
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from engage.commands._args import REASON_HELP, command, command_group
from engage.commands.support import CommandError, cli_actor, emit, now, open_database, table
from engage.config import Settings
from storage import audit, outbox
from storage.models import OutboundMessage
from study.senders import mask_sender

COLUMNS = ["message_id", "lane", "channel", "address", "key", "template", "attempts",
           "created_at", "attempted_at", "error"]


def register(sub: argparse._SubParsersAction) -> None:
    group = command_group(sub, "outbox", help="messages out whose fate is unknown")
    command(group, "unknown", _unknown,
            help="messages in state unknown (the provider may or may not have them)")

    requeue = command(group, "requeue", _requeue, help="send a message of unknown fate again "
                      "(audited; the recipient may get it twice)")
    requeue.add_argument("message", metavar="ID", type=int, help="the message id")
    requeue.add_argument("--reason", default="", help=REASON_HELP)


def _line(item: outbox.UnknownFate) -> dict[str, Any]:
    row = item.row
    return {"message_id": row.id, "lane": row.lane, "channel": row.channel,
            "address": mask_sender(row.address), "key": row.dedupe_key,
            "template": row.template_id, "attempts": row.attempts,
            "created_at": row.created_at, "attempted_at": item.attempted_at,
            "error": row.last_error}


async def _unknown(args: argparse.Namespace, settings: Settings) -> int:
    at = now()
    async with open_database(settings) as database, database.write() as session:
        rows = [_line(item) for item in await outbox.of_unknown_fate(session)]
        audit.record(session, at=at, actor=cli_actor(), action="query",
                     entity="outbound_messages", entity_id="*", field="outbox unknown")
    emit(rows, args.json, table(rows, COLUMNS, "no message of unknown fate"))
    return 0


async def _requeue(args: argparse.Namespace, settings: Settings) -> int:
    at = now()
    reason = args.reason or "sent again from the command line"
    async with open_database(settings) as database, database.write() as session:
        row = await _row(session, args.message)
        if not await outbox.requeue_unknown(session, message_id=row.id, now=at,
                                            reason=f"requeued by {cli_actor().id}: {reason}"):
            raise CommandError(f"message {args.message} changed meanwhile; nothing was done")
        audit.record(session, at=at, actor=cli_actor(), action="requeue",
                     entity="outbound_messages", entity_id=str(row.id), field="status",
                     old=outbox.UNKNOWN, new=outbox.QUEUED, reason=reason)
        line = {"message_id": row.id, "status": outbox.QUEUED, "channel": row.channel,
                "address": mask_sender(row.address), "due_at": at}
    emit(line, args.json, f"message {row.id}: queued to be sent again by {row.channel} to "
                          f"{line['address']}")
    return 0


async def _row(session: AsyncSession, message_id: int) -> OutboundMessage:
    row = await session.get(OutboundMessage, message_id, with_for_update=True)
    if row is None:
        raise CommandError(f"no message {message_id}")
    if row.status != outbox.UNKNOWN:
        raise CommandError(f"message {message_id} is {row.status}, not unknown: only a "
                           "message of unknown fate is sent again")
    return row

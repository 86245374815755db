"""The outbox: messages are planned as rows with a unique key, then claimed and sent.

Planning the same message twice (two ticks, two workers) inserts one row: the dedupe key
(e.g. `dose:reminder:<dose id>`) is unique.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import OutboundMessage

SAFETY = "safety"
ROUTINE = "routine"


async def enqueue(session: AsyncSession, *, key: str, channel: str, address: str,
                  template_id: str, template_version: str, language: str, body: str,
                  due_at: datetime, now: datetime, lane: str = ROUTINE,
                  choices: list[dict[str, str]] | None = None, image: bytes | None = None,
                  patient_id: int | None = None, staff_id: int | None = None,
                  dose_id: int | None = None, alert_id: int | None = None,
                  visit_id: int | None = None) -> OutboundMessage | None:
    """Insert a message unless one with the same key exists; return it, or None if it existed."""
    values: dict[str, Any] = {
        "dedupe_key": key, "channel": channel, "address": address, "template_id": template_id,
        "template_version": template_version, "language": language, "body": body, "due_at": due_at,
        "lane": lane, "choices": choices or [], "image": image, "patient_id": patient_id,
        "staff_id": staff_id, "dose_id": dose_id, "alert_id": alert_id, "visit_id": visit_id,
        "status": "queued", "attempts": 0, "created_at": now,
    }
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    statement = (insert(OutboundMessage).values(**values)
                 .on_conflict_do_nothing(index_elements=["dedupe_key"])
                 .returning(OutboundMessage.id))
    new_id = (await session.execute(statement)).scalar_one_or_none()
    if new_id is None:
        return None
    return (await session.execute(
        select(OutboundMessage).where(OutboundMessage.id == new_id))).scalar_one()

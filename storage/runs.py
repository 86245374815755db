"""Once-only marks in `tick_runs`: a key claimed in the transaction that does the job."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.db import insert_new
from storage.models import TickRun


async def claim(session: AsyncSession, key: str, now: datetime) -> bool:
    """Claim a key; False if it was claimed before (by this or another worker)."""
    statement = (insert_new(session, TickRun, unique=["key"]).values(key=key, at=now)
                 .returning(TickRun.key))
    return (await session.execute(statement)).scalar_one_or_none() is not None


async def claim_many(session: AsyncSession, keys: Iterable[str], now: datetime) -> set[str]:
    """Claim many keys in one statement; the keys this call claimed (the others were claimed
    before, by this or another worker)."""
    wanted = list(dict.fromkeys(keys))
    if not wanted:
        return set()
    statement = insert_new(session, TickRun, unique=["key"]).returning(TickRun.key)
    return set((await session.execute(statement, [{"key": key, "at": now}
                                                  for key in wanted])).scalars())


async def claimed(session: AsyncSession, keys: Iterable[str]) -> set[str]:
    """Which of these keys are claimed."""
    wanted = list(keys)
    if not wanted:
        return set()
    return set((await session.execute(
        select(TickRun.key).where(TickRun.key.in_(wanted)))).scalars())

"""Tick step: each site's daily digest, once per local day at the protocol's digest time
(what goes and to whom: `study.digest_sending`).

The day's key `digest:{site}:{local_date}` is claimed in `tick_runs` in the same transaction
that queues the messages, so two ticks (or two workers) at the same instant send it once.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from functools import lru_cache

from sqlalchemy import Executable, exists, literal, select
from sqlalchemy.ext.asyncio import AsyncSession

from scheduler.steps import TickStep
from storage import runs
from storage.db import Database
from storage.models import Site, TickRun
from study import digest
from study.digest_sending import digest_key, due_date, due_in, send_digest
from trial.protocol import Protocol


@lru_cache(maxsize=2)  # built once a day: the probe runs on every pass
def _claims_around(utc_day: date) -> tuple[list[date], Executable]:
    """The local dates a site can have within a day of `utc_day`, and a statement of each
    site's zone with whether its digest of each of those dates is claimed."""
    days = [utc_day + timedelta(days=shift) for shift in (-1, 0, 1)]
    claims = [exists().where(TickRun.key == literal("digest:") + Site.id
                             + literal(f":{day.isoformat()}")) for day in days]
    return days, select(Site.tz, *claims)


async def digests_due(session: AsyncSession, protocol: Protocol, now: datetime) -> bool:
    """Probe: a site's digest is due and not sent. One statement: each site, with whether its
    digest is claimed for each local date it can have now (within a day of the UTC date)."""
    days, statement = _claims_around(now.astimezone(UTC).date())
    # Columns, not Site objects: the probe runs on every pass.
    for tz, *claimed in (await session.execute(statement)).all():
        day = due_in(tz, protocol, now)
        if day is not None and not dict(zip(days, claimed, strict=True)).get(day, False):
            return True
    return False


async def plan_digests(db: Database, protocol: Protocol, now: datetime) -> int:
    """Tick step: queue every site's digest whose local time has come and that is not sent."""
    queued = 0
    # One transaction for the sites due now: each digest is claimed, queued and stamped with
    # it, all at once (sites fall due together, and one transaction costs far less than six).
    async with db.write() as session:
        sites = (await session.execute(select(Site).order_by(Site.id))).scalars().all()
        due = [(site, day) for site in sites
               if (day := due_date(site, protocol, now)) is not None]
        if not due:
            return 0
        # Every due site's key claimed at once (a key claimed before, by this or another
        # worker, is not claimed again: that digest is sent), their recipients read at once.
        claimed = await runs.claim_many(session, [digest_key(s.id, d) for s, d in due], now)
        readers = await digest.recipients_of(session, [s.id for s, d in due
                                                       if digest_key(s.id, d) in claimed])
        for site, day in due:
            if digest_key(site.id, day) not in claimed:
                continue
            queued += await send_digest(session, protocol, site, day, now=now,
                                        recipients=readers.get(site.id, []))
    return queued


# After doses and visits in the tick: the digest reads what they just wrote.
STEPS = (TickStep("digest", plan_digests, probe=digests_due),)

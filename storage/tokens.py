"""Access tokens shared by every worker through the database (WeChat and WeCom: a token lives
7,200 s and fetching one is rate-limited, so workers must not each fetch their own).

`access_token(db, name, fetch, now=...)` returns a token valid for a while yet; when none is, one
worker takes a short lease, calls `fetch()` and stores the result while the others wait for it.
After the provider refuses a token (WeChat 40001/42001), call it again with `rejected=` that
token: it is replaced once, however many workers saw the refusal.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, CursorResult, or_, select, update

from storage.db import Database, insert_new
from storage.models import ProviderToken

# A token this close to its expiry is renewed before use (a send must not meet the expiry).
MARGIN = timedelta(seconds=300)
LEASE = timedelta(seconds=30)
POLL_SECONDS = 0.1

# fetch() -> (token, lifetime in seconds); raises when the provider cannot give one.
Fetch = Callable[[], Awaitable[tuple[str, int]]]


class TokenUnavailableError(Exception):
    """No token could be had: the fetch failed or another worker's lease ran out without one."""


async def access_token(db: Database, name: str, fetch: Fetch, *, now: Callable[[], datetime],
                       rejected: str | None = None, wait: timedelta = LEASE) -> str:
    """A usable token for `name` (see the module's docstring)."""
    deadline = asyncio.get_running_loop().time() + wait.total_seconds() + LEASE.total_seconds()
    while True:
        moment = now()
        async with db.write() as session:
            await session.execute(insert_new(session, ProviderToken, unique=["name"])
                                  .values(name=name))
            row = (await session.execute(
                select(ProviderToken.value, ProviderToken.expires_at)
                .where(ProviderToken.name == name))).one()
            if _usable(row.value, row.expires_at, moment, rejected):
                return str(row.value)
            claimed: CursorResult[tuple[()]] = await session.execute(  # type: ignore[assignment]
                update(ProviderToken)
                .where(ProviderToken.name == name,
                       or_(ProviderToken.refreshing_until.is_(None),
                           ProviderToken.refreshing_until <= moment),
                       # Still unusable: another worker may have stored a token since the
                       # SELECT (PostgreSQL, READ COMMITTED), and then there is nothing to do.
                       _unusable(moment, rejected))
                .values(refreshing_until=moment + LEASE))
        if claimed.rowcount:
            return await _refresh(db, name, fetch, now)
        if asyncio.get_running_loop().time() > deadline:
            raise TokenUnavailableError(
                f"{name}: another worker is refreshing the token and has not stored one")
        await asyncio.sleep(POLL_SECONDS)


def _unusable(moment: datetime, rejected: str | None) -> ColumnElement[bool]:
    """`_usable`'s negation, in SQL."""
    stale = [ProviderToken.value.is_(None), ProviderToken.expires_at.is_(None),
             ProviderToken.expires_at <= moment + MARGIN]
    if rejected is not None:
        stale.append(ProviderToken.value == rejected)
    return or_(*stale)


def _usable(value: str | None, expires_at: datetime | None, moment: datetime,
            rejected: str | None) -> bool:
    return (value is not None and value != rejected and expires_at is not None
            and expires_at - MARGIN > moment)


async def _refresh(db: Database, name: str, fetch: Fetch, now: Callable[[], datetime]) -> str:
    try:
        value, lifetime = await fetch()
    except Exception as exc:
        async with db.write() as session:  # give the lease back: the next caller tries again
            await session.execute(update(ProviderToken).where(ProviderToken.name == name)
                                  .values(refreshing_until=None))
        raise TokenUnavailableError(f"{name}: {exc}") from exc
    moment = now()
    async with db.write() as session:
        await session.execute(
            update(ProviderToken).where(ProviderToken.name == name)
            .values(value=value, expires_at=moment + timedelta(seconds=lifetime),
                    refreshing_until=None, updated_at=moment))
    return value

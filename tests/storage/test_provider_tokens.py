"""One access token for every worker (WeChat, WeCom): fetched once, replaced once when refused."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from engage.clock import SimulatedClock
from storage.db import Database
from storage.tokens import TokenUnavailableError, access_token

START = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)


class Provider:
    """Hands out numbered tokens, slowly, as a token endpoint does."""

    def __init__(self) -> None:
        self.calls = 0

    async def fetch(self) -> tuple[str, int]:
        self.calls += 1
        await asyncio.sleep(0.05)
        return f"token-{self.calls}", 7200


async def test_two_workers_share_one_token_and_replace_a_refused_one_once(db_url: str) -> None:
    clock = SimulatedClock(START)
    workers = [Database(db_url), Database(db_url)]
    provider = Provider()
    try:
        got = await asyncio.gather(*(access_token(w, "wechat:app", provider.fetch, now=clock.now)
                                     for w in workers for _ in range(3)))
        assert set(got) == {"token-1"}
        assert provider.calls == 1
        # Both workers see the provider refuse token-1 (errcode 40001): one new token.
        again = await asyncio.gather(*(access_token(w, "wechat:app", provider.fetch,
                                                    now=clock.now, rejected="token-1")
                                       for w in workers))
        assert set(again) == {"token-2"}
        assert provider.calls == 2
        # Near its expiry the token is renewed before use.
        clock.advance(timedelta(seconds=7200 - 200))
        assert await access_token(workers[1], "wechat:app", provider.fetch,
                                  now=clock.now) == "token-3"
        # Another name is another token.
        assert await access_token(workers[0], "wecom:corp", provider.fetch,
                                  now=clock.now) == "token-4"
    finally:
        for w in workers:
            await w.dispose()


async def test_a_failed_fetch_is_reported_and_the_next_caller_tries_again(db: Database) -> None:
    clock = SimulatedClock(START)

    async def down() -> tuple[str, int]:
        raise OSError("connection refused")

    with pytest.raises(TokenUnavailableError, match="connection refused"):
        await access_token(db, "wechat:app", down, now=clock.now)
    provider = Provider()
    assert await access_token(db, "wechat:app", provider.fetch, now=clock.now) == "token-1"

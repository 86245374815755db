"""The fake Bot API and Twilio API of fakes/, run in their own process for benchmarks.

The fakes are the test suite's (`fakes`), extended with what a benchmark needs: the
Telegram limits enforced at arrival (at most `rate` sends in any sliding second for the bot, at
most `chat_rate` per chat; beyond that the real 429 body with `retry_after`), an arrival time
(`time.monotonic()`, the same clock in every process of the machine) for every call, and
`GET /stats` to read the counts and calls from the benchmark process.

Run as `python bench/fakes.py [--rate 30 --chat-rate 1]`: prints one JSON line with both base
URLs, then serves until stdin closes or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from aiohttp import web  # noqa: E402

from fakes.telegram_api import FakeTelegramAPI  # noqa: E402
from fakes.twilio_api import FakeTwilioAPI  # noqa: E402

SENDS = frozenset({"sendMessage", "sendPhoto"})


class LimitedTelegramAPI(FakeTelegramAPI):
    """The fake Bot API with Telegram's bulk limits enforced and every call timed."""

    def __init__(self, *, rate: float = 0.0, chat_rate: float = 0.0) -> None:
        super().__init__()
        self.rate = rate
        self.chat_rate = chat_rate
        self.window: collections.deque[float] = collections.deque()
        self.last_to_chat: dict[str, float] = {}
        self.refused = 0  # 429s answered
        self.refused_by: collections.Counter[str] = collections.Counter()  # bot / chat limit
        self.arrivals: list[tuple[float, str, str, str, int]] = []  # t, method, chat, text, status
        self.max_in_window = 0

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/bot{token}/{method}", self._timed)
        app.router.add_get("/stats", self._stats)
        # The parent's server, so the parent's stop() stops this one.
        self.base_url = await self._server.serve(app, backlog=1024)
        return self.base_url

    async def _timed(self, request: web.Request) -> web.Response:
        arrived = time.monotonic()
        method = request.match_info["method"]
        if method in SENDS:
            form = await request.post()  # cached: the parent's _dispatch reads it again
            chat = str(form.get("chat_id", ""))
            refusal = self._limit(chat, arrived)
            if refusal is not None:
                self.refused += 1
                self.arrivals.append((arrived, method, chat, "", 429))
                return self._error(429, f"Too Many Requests: retry after {refusal}", refusal)
            response = await self._dispatch(request)
            self.arrivals.append((arrived, method, chat, str(form.get("text", ""))[:300],
                                  response.status))
            return response
        return await self._dispatch(request)

    def _limit(self, chat: str, now: float) -> int | None:
        """None if a send arriving now is within the limits, else the retry_after to answer."""
        if self.rate > 0:
            while self.window and self.window[0] <= now - 1.0:
                self.window.popleft()
            if len(self.window) >= self.rate:
                self.refused_by["bot"] += 1
                return 1
        if self.chat_rate > 0:
            last = self.last_to_chat.get(chat)
            if last is not None and now - last < 1.0 / self.chat_rate:
                self.refused_by["chat"] += 1
                return 1
            self.last_to_chat[chat] = now
        if self.rate > 0:
            self.window.append(now)
            self.max_in_window = max(self.max_in_window, len(self.window))
        return None

    async def _stats(self, request: web.Request) -> web.Response:
        body: dict[str, Any] = {"sent": sum(1 for a in self.arrivals if a[4] == 200),
                                "refused": self.refused, "refused_by": self.refused_by,
                                "max_in_window": self.max_in_window}
        if request.query.get("calls"):
            body["calls"] = self.arrivals
        if request.query.get("reset"):
            self.arrivals, self.refused, self.max_in_window = [], 0, 0
            self.refused_by.clear()
            self.calls.clear()
        return web.json_response(body)


async def serve(rate: float, chat_rate: float) -> None:
    telegram = LimitedTelegramAPI(rate=rate, chat_rate=chat_rate)
    twilio = FakeTwilioAPI()
    await telegram.start()
    await twilio.start()
    print(json.dumps({"telegram": telegram.base_url, "twilio": twilio.base_url}), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_reader(sys.stdin.fileno(), lambda: stop.set() if not sys.stdin.read(1) else None)
    await stop.wait()
    await telegram.stop()
    await twilio.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, default=0.0, help="bot-wide sends/s (0: none)")
    parser.add_argument("--chat-rate", type=float, default=0.0, help="sends/s per chat")
    args = parser.parse_args()
    asyncio.run(serve(args.rate, args.chat_rate))


if __name__ == "__main__":
    main()

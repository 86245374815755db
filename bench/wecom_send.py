"""WeCom sending: the adapter's way (aiohttp against the documented endpoints, the access token
shared through the database) against wechatpy's own client (requests, synchronous) run in
threads, as the issue allowed; the same text messages to the fake WeCom API (fakes/), which
runs in its own process.

    .venv/bin/python bench/wecom_send.py [--messages 600] [--concurrency 20]

`--concurrency` sends are in flight at once (the dispatcher's safety lane takes 20). wechatpy's
calls run in asyncio's default thread pool (min(32, cores + 4) threads) and in a pool as wide
as the concurrency; its token is fetched once and set on the client, as the adapter's is. The
figures: wall time, sends per second, latency per send (p50, p95) and this process's CPU time
per send (the fake's CPU is not counted).
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import common
from wechatpy.enterprise import WeChatClient

from bot.channels.wecom import WeComAPI, WeComChannel
from engage.clock import SystemClock
from fakes.wecom import AGENT_ID, CORP_ID, SECRET
from messages.channel import OutgoingMessage

FAKE = """
import asyncio, sys
sys.path.insert(0, {root!r})
from fakes.wecom import FakeWeComAPI

async def main():
    api = FakeWeComAPI()
    print(await api.start(), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await api.stop()

asyncio.run(main())
"""


async def timed(n: int, concurrency: int, send: Callable[[int], Awaitable[object]]
                ) -> tuple[float, float, list[float]]:
    """Send n messages, `concurrency` at a time: wall seconds, CPU seconds, latencies."""
    latencies: list[float] = []
    queue = iter(range(n))

    async def worker() -> None:
        for i in queue:
            started = time.monotonic()
            await send(i)
            latencies.append(time.monotonic() - started)

    cpu, wall = time.process_time(), time.monotonic()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.monotonic() - wall, time.process_time() - cpu, latencies


def line(name: str, n: int, wall: float, cpu: float, latencies: list[float]) -> None:
    p50, p95 = (common.ms(common.percentile(latencies, p)) for p in (50, 95))
    print(f"   {name:<34} {n / wall:7.0f} sends/s   p50 {p50}   p95 {p95}"
          f"   CPU {cpu / n * 1e6:6.0f} µs/send")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=600)
    parser.add_argument("--concurrency", type=int, default=20)
    args = parser.parse_args()
    n, width = args.messages, args.concurrency
    common.header(f"WeCom sends: {n} text messages, {width} in flight")
    fake = await asyncio.create_subprocess_exec(
        sys.executable, "-c", FAKE.format(root=str(common.ROOT)), stdin=subprocess.PIPE,
        stdout=subprocess.PIPE)
    try:
        assert fake.stdout is not None
        base_url = (await fake.stdout.readline()).decode().strip()
        with tempfile.TemporaryDirectory() as tmp:
            db = await common.sqlite_database(Path(tmp))
            channel = WeComChannel(WeComAPI(db, SystemClock().now, corp_id=CORP_ID,
                                            agent_id=AGENT_ID, secret=SECRET, api_url=base_url))
            try:
                await channel.send(OutgoingMessage(0, "warmup", "warm up"))

                async def ours(i: int) -> object:
                    return await channel.send(OutgoingMessage(i, f"user{i % 50}", f"提醒 {i}"))

                adapter = await timed(n, width, ours)
            finally:
                await channel.close()
                await db.dispose()
        client = WeChatClient(CORP_ID, SECRET, timeout=10, auto_retry=False)
        client.API_BASE_URL = base_url + "/cgi-bin/"
        await asyncio.to_thread(client._fetch_access_token, url=base_url + "/cgi-bin/gettoken",
                                params={"corpid": CORP_ID, "corpsecret": SECRET})

        async def library(i: int) -> object:
            return await asyncio.to_thread(client.message.send_text, AGENT_ID,
                                           f"user{i % 50}", f"提醒 {i}")

        await library(0)
        threaded = await timed(n, width, library)
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=width)
        loop = asyncio.get_running_loop()

        async def library_wide(i: int) -> object:
            return await loop.run_in_executor(pool, client.message.send_text, AGENT_ID,
                                              f"user{i % 50}", f"提醒 {i}")

        wide = await timed(n, width, library_wide)
        pool.shutdown()
    finally:
        if fake.stdin is not None:
            fake.stdin.close()
        await asyncio.wait_for(fake.wait(), 10)
    line("adapter (aiohttp, DB-shared token)", n, *adapter)
    line("wechatpy client, default threads", n, *threaded)
    line(f"wechatpy client, {width} threads", n, *wide)
    best = min(threaded[0], wide[0])
    common.goal("the adapter is at least as fast as wechatpy in threads", adapter[0] <= best,
                f"{adapter[0]:.2f} s against {best:.2f} s")


if __name__ == "__main__":
    asyncio.run(main())

"""Inbound: signed Twilio webhooks (dose confirmations and symptom reports) into the real HTTP
app (`bot.http` + the conversation core), at a fixed offered rate and at the maximum rate, on
SQLite and PostgreSQL; against a minimal aiohttp handler that checks the signature and inserts
the raw message with the same engine.

    .venv/bin/python bench/inbound.py [--rate 200] [--seconds 15] [--sqlite-only]

The server under test runs in its own process (one core, as `engage run` does); the load
generator runs in this process on the other core, with every request signed beforehand, so the
generator never competes with the server for a core. The fixed rate is open-loop: each
request's latency counts from its scheduled send time, so a slow server cannot hide its queue
(no coordinated omission). The maximum rate is closed-loop: `--clients` connections each send
the next request as soon as the previous answer arrives, for `--max-seconds`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlencode

import aiohttp
import common
from aiohttp import web

from storage.db import Database
from trial.protocol import load_protocol

PATIENTS = 20_000
SYMPTOMS = ("有点头痛", "headache since yesterday, a bit tired", "发烧 38.6 度, 全身发冷")


# -- the two servers (run with --serve in a child process) ---------------------------------

def engage_app(db: Database, public_url: str) -> web.Application:
    """The real app: `bot.http.build_app` with the conversation core."""
    from bot.channels.twilio.inbound import TwilioInbound
    from bot.conversation import Conversation
    from bot.http import Server, build_app

    protocol = load_protocol()
    # Five minutes after the 08:00 reminders: a TAKEN is on time.
    clock = common.OffsetClock(common.START + timedelta(minutes=5))
    conversation = Conversation(db, protocol, clock)
    return build_app(Server(db=db, routes=TwilioInbound(
        conversation, db, clock, public_url, common.AUTH_TOKEN).routes()))


async def serve(kind: str, url: str, port: int) -> None:
    db = Database(url)
    public_url = f"http://127.0.0.1:{port}"
    app = (engage_app if kind == "engage" else common.baseline_app)(db, public_url)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=1024).start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await runner.cleanup()
    await db.dispose()


@dataclass(frozen=True)
class Serving:
    """A server process and its port."""

    pid: int
    port: int


@contextlib.contextmanager
def server(kind: str, url: str) -> Iterator[Serving]:
    port = common.free_port()
    with common.served([common.PYTHON, __file__, "--serve", kind, "--db", url, "--port",
                        str(port)], port, cwd=common.ROOT) as process:
        yield Serving(process.pid, port)


# -- the load generator --------------------------------------------------------------------

@dataclass(frozen=True)
class Request:
    body: bytes
    headers: dict[str, str]


def requests(port: int, first: int, count: int) -> list[Request]:
    """Signed webhooks: 7 in 10 a dose confirmation, 3 a symptom report (1 of them a fever),
    each from a different patient."""
    url = f"http://127.0.0.1:{port}/twilio/sms"
    made = []
    for i in range(count):
        patient = 1 + (first + i) % PATIENTS
        text = "TAKEN" if i % 10 < 7 else SYMPTOMS[i % 10 - 7]
        form = common.sms_form(common.Seeded.phone(patient), text)
        made.append(Request(urlencode(form).encode(), {
            **common.signed(url, form), "Content-Type": "application/x-www-form-urlencoded"}))
    return made


@dataclass
class Run:
    label: str
    sent: int
    errors: int
    seconds: float
    latencies: list[float]
    server_cpu: float

    @property
    def rate(self) -> float:
        return (self.sent - self.errors) / self.seconds

    def line(self) -> str:
        return (f"{self.label}: {self.rate:7.1f} req/s, p50 {common.ms(self.p50):>9}, "
                f"p99 {common.ms(self.p99):>9}, errors {self.errors}, server CPU "
                f"{self.server_cpu / max(1, self.sent) * 1000:.2f} ms/req")

    @property
    def p50(self) -> float:
        return common.percentile(self.latencies, 50)

    @property
    def p99(self) -> float:
        return common.percentile(self.latencies, 99)


async def _post(http: aiohttp.ClientSession, url: str, request: Request) -> bool:
    async with http.post(url, data=request.body, headers=request.headers) as response:
        await response.read()
        return response.status == 200


@dataclass
class _Tally:
    """The latencies and errors of the posts of one run."""

    http: aiohttp.ClientSession
    url: str
    latencies: list[float] = field(default_factory=list)
    errors: int = 0

    async def post(self, request: Request, since: float) -> None:
        """One webhook POST, its latency counted from `since` (failed or refused: an error)."""
        try:
            ok = await _post(self.http, self.url, request)
        except aiohttp.ClientError:
            ok = False
        self.errors += not ok
        self.latencies.append(time.monotonic() - since)


async def fixed_rate(label: str, process: Serving, batch: list[Request], rate: float) -> Run:
    url = f"http://127.0.0.1:{process.port}/twilio/sms"
    connector = aiohttp.TCPConnector(limit=500)
    async with aiohttp.ClientSession(connector=connector) as http:
        tally = _Tally(http, url)
        cpu = common.cpu_seconds(process.pid)
        tasks = []
        start = time.monotonic() + 0.05
        for i, request in enumerate(batch):
            intended = start + i / rate
            delay = intended - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(tally.post(request, intended)))
        await asyncio.gather(*tasks)
        seconds = time.monotonic() - start
    return Run(label, len(batch), tally.errors, seconds, tally.latencies,
               common.cpu_seconds(process.pid) - cpu)


async def max_rate(label: str, process: Serving, batch: list[Request], clients: int,
                   seconds: float) -> Run:
    url = f"http://127.0.0.1:{process.port}/twilio/sms"
    pending = iter(batch)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients)) as http:
        tally = _Tally(http, url)
        deadline = time.monotonic() + seconds

        async def client() -> None:
            for request in pending:
                if time.monotonic() > deadline:
                    return
                await tally.post(request, time.monotonic())

        cpu = common.cpu_seconds(process.pid)
        start = time.monotonic()
        await asyncio.gather(*(client() for _ in range(clients)))
        elapsed = time.monotonic() - start
    return Run(label, len(tally.latencies), tally.errors, elapsed, tally.latencies,
               common.cpu_seconds(process.pid) - cpu)


async def seeded_database(url: str) -> None:
    db = Database(url)
    await common.seed(db, load_protocol(), patients=PATIENTS, telegram=False, open_dose=True)
    await db.dispose()


def measure(backend: str, url: str, args: argparse.Namespace) -> dict[str, Run]:
    """Baseline and Engage on one database: fixed rate, then the maximum rate."""
    count = int(args.rate * args.seconds)
    most = int(args.max_seconds * 2000)  # more than any server here can take in that time
    runs: dict[str, Run] = {}
    first = 0  # the baseline stores raw rows only: Engage starts from the same patients
    for kind in ("baseline", "engage"):
        with server(kind, url) as process:
            port = process.port
            warm = requests(port, first + 15_000, 50)
            asyncio.run(max_rate("warm-up", process, warm, 8, 5.0))
            batch = requests(port, first, count)
            runs[f"{kind} fixed"] = asyncio.run(fixed_rate(
                f"{backend:10} {kind:8} at {args.rate:.0f}/s", process, batch, args.rate))
            print("   " + runs[f"{kind} fixed"].line(), flush=True)
            batch = requests(port, first + count, most)
            runs[f"{kind} max"] = asyncio.run(max_rate(
                f"{backend:10} {kind:8} maximum", process, batch, args.clients,
                args.max_seconds))
            print("   " + runs[f"{kind} max"].line(), flush=True)
    return runs


def report(backend: str, runs: dict[str, Run], rate: float, strict: bool) -> None:
    fixed, top, base_top = runs["engage fixed"], runs["engage max"], runs["baseline max"]
    if strict:
        base = runs["baseline fixed"]
        common.goal(f"{backend}: p99 < 100 ms at {rate:.0f} req/s",
                    fixed.p99 < 0.100 and fixed.errors == 0 and fixed.rate > 0.95 * rate,
                    f"p99 {common.ms(fixed.p99)} at {fixed.rate:.0f} req/s done "
                    f"(baseline {common.ms(base.p99)})")
    common.goal(f"{backend}: max rate >= 0.5 x baseline", top.rate >= 0.5 * base_top.rate,
                f"ratio {top.rate / base_top.rate:.2f} ({top.rate:.0f} vs {base_top.rate:.0f} "
                "req/s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--max-seconds", type=float, default=10.0)
    parser.add_argument("--sqlite-only", action="store_true")
    parser.add_argument("--serve", choices=["engage", "baseline"], help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.serve, args.db, args.port))
        return
    common.header("inbound webhooks")
    print(f"   server in its own process; open-loop generator at {args.rate:.0f} req/s for "
          f"{args.seconds:.0f} s, then {args.clients} closed-loop clients for "
          f"{args.max_seconds:.0f} s; 70% TAKEN, 30% symptom reports (10% fever)")
    with tempfile.TemporaryDirectory(prefix="engage-bench-") as tmp:
        directory = Path(tmp)

        async def sqlite_url() -> str:
            db = await common.sqlite_database(directory, "inbound.db")
            await db.dispose()
            url = f"sqlite+aiosqlite:///{directory / 'inbound.db'}"
            await seeded_database(url)
            return url

        url = asyncio.run(sqlite_url())
        report("SQLite", measure("SQLite", url, args), args.rate, strict=True)
    if args.sqlite_only:
        return
    if not asyncio.run(common.postgres_available()):
        print("   PostgreSQL unreachable: skipped")
        return

    async def postgres() -> None:
        async with common.postgres_url() as url:
            await seeded_database(url)
            runs = await asyncio.to_thread(measure, "PostgreSQL", url, args)
            report("PostgreSQL", runs, args.rate, strict=False)

    asyncio.run(postgres())


if __name__ == "__main__":
    main()

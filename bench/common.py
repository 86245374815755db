"""What every benchmark shares: paths, the machine, clocks, databases, bulk seeding, the fake
provider process, signed webhooks, percentiles and the PASS/MISS line."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import platform
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
from aiohttp import web  # noqa: E402
from sqlalchemy import Table, insert  # noqa: E402
from twilio.request_validator import RequestValidator  # noqa: E402

from storage.db import Database  # noqa: E402
from storage.migrate import upgrade  # noqa: E402
from storage.models import DoseRecord, InboundMessage, Patient, Site, Staff, Visit  # noqa: E402
from trial import schedule  # noqa: E402
from trial.protocol import Protocol  # noqa: E402

PYTHON = sys.executable
TOKEN = "42:BENCH-TOKEN"
ACCOUNT = "AC" + "1" * 32
AUTH_TOKEN = "bench-twilio-auth-token"
SERVICE = "MG" + "2" * 32
PG_ADMIN_URL = os.environ.get("ENGAGE_BENCH_POSTGRES_URL",
                              "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres")
TZ = "Asia/Shanghai"
# A Tuesday (no weekly check-in), 08:00 in Shanghai: a dose time, outside quiet hours.
START = datetime(2026, 3, 3, 0, 0, tzinfo=UTC)
COORDINATOR_CHAT = 9_000_000  # + site number
PATIENT_CHAT = 100_000_000  # + patient number


# -- output --------------------------------------------------------------------------------

def machine() -> str:
    """One line describing where the figures come from."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return (f"{os.cpu_count()} cores ({cpu}), Linux {platform.release()}, "
            f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}")


def header(title: str) -> None:
    print(f"== {title}")
    print(f"   machine: {machine()}")


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def goal(label: str, ok: bool, detail: str) -> bool:
    """Print one goal line: PASS/MISS, what, the figures."""
    print(f"   [{verdict(ok)}] {label}: {detail}")
    return ok


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), round(p / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


# -- clocks --------------------------------------------------------------------------------

class OffsetClock:
    """Real elapsed time from a chosen start instant (quiet hours and due times stay fixed)."""

    def __init__(self, start: datetime = START) -> None:
        self.start = start
        self._t0 = time.monotonic()

    def now(self) -> datetime:
        return self.start + timedelta(seconds=time.monotonic() - self._t0)


# -- databases -----------------------------------------------------------------------------

async def sqlite_database(directory: Path, name: str = "engage.db") -> Database:
    """A fresh migrated SQLite file."""
    path = directory / name
    remove_database(path)
    db = Database(f"sqlite+aiosqlite:///{path}")
    await upgrade(db.engine)
    return db


def remove_database(path: Path) -> None:
    """Delete a SQLite file and its WAL files."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


async def _pg_admin(statement: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN_URL.replace("postgresql+asyncpg://", "postgresql://"),
                                 timeout=5)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


_pg_names = itertools.count(1)


@contextlib.asynccontextmanager
async def postgres_url() -> AsyncIterator[str]:
    """URL of a fresh migrated PostgreSQL database, dropped afterwards."""
    name = f"engage_bench_{os.getpid()}_{next(_pg_names)}"
    await _pg_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    await _pg_admin(f"CREATE DATABASE {name}")
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    try:
        db = Database(url)
        await upgrade(db.engine)
        await db.dispose()
        yield url
    finally:
        await _pg_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


async def postgres_available() -> bool:
    try:
        await _pg_admin("SELECT 1")
    except Exception:
        return False
    return True


# -- seeding (bulk inserts: the CLI's per-patient audit trail would take minutes) -----------

@dataclass(frozen=True)
class Seeded:
    patients: int
    sites: int

    @staticmethod
    def phone(n: int) -> str:
        return f"+86138{n:08d}"

    @staticmethod
    def chat(n: int) -> int:
        return PATIENT_CHAT + n

    @staticmethod
    def site(n: int) -> str:
        return f"S{n:02d}"


def _chunks(rows: list[dict[str, Any]], size: int = 5000) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, len(rows), size):
        yield rows[start:start + size]


async def bulk(db: Database, model: Any, rows: list[dict[str, Any]]) -> None:
    """Insert rows with executemany, a few thousand per transaction."""
    table: Table = model.__table__
    for chunk in _chunks(rows):
        async with db.write() as session:
            await session.execute(insert(table), chunk)


async def seed(db: Database, protocol: Protocol, *, patients: int, now: datetime = START,
               sites: int = 6, telegram: bool = True, phone: bool = True,
               dose_time: str = "08:00", baseline_days: int = 30, planned: bool = False,
               open_dose: bool = False, visits: bool = False, first: int = 1,
               coordinators: bool = True) -> Seeded:
    """Sites with one coordinator each (Telegram), and `patients` active patients.

    `planned`: in the steady state (today's dose row exists, the next planning is due a day
    before tomorrow's dose); `open_dose`: today's dose was reminded and awaits an answer.
    """
    if first == 1:
        await bulk(db, Site, [{"id": Seeded.site(s), "name": f"Hospital {s}", "tz": TZ,
                               "phone": None, "created_at": now} for s in range(1, sites + 1)])
        if coordinators:
            await bulk(db, Staff, [
                {"id": s, "site_id": Seeded.site(s), "role": "coordinator", "name": f"C{s}",
                 "telegram_id": COORDINATOR_CHAT + s, "phone": None, "language": "en",
                 "active": True, "telegram_reachable": True, "created_at": now}
                for s in range(1, sites + 1)])
    today = now.astimezone(ZoneInfo(TZ)).date()
    baseline = today - timedelta(days=baseline_days)
    people, doses, visit_list = [], [], []
    for n in range(first, first + patients):
        times = schedule.dose_times(protocol.reminders, today, dose_time, TZ)
        tomorrow = schedule.dose_times(protocol.reminders, today + timedelta(days=1),
                                       dose_time, TZ)
        people.append({
            "id": n, "subject_id": f"P{n:06d}", "site_id": Seeded.site(1 + n % sites),
            "baseline": baseline, "dose_time": dose_time, "tz": TZ,
            "language": "zh" if n % 2 else "en",
            "phone": Seeded.phone(n) if phone else None,
            "telegram_id": Seeded.chat(n) if telegram else None, "status": "active",
            "opted_out": False, "telegram_reachable": True, "sms_reachable": True,
            "planned_through": today if planned or open_dose else None,
            "plan_next_at": (tomorrow.due_at - timedelta(days=1)) if planned or open_dose
            else None, "created_at": now - timedelta(days=baseline_days)})
        if planned or open_dose:
            doses.append(dose_row(n, times, "reminded" if open_dose else "scheduled"))
        if visits:
            visit_list += visit_rows(protocol, n, baseline, today)
    await bulk(db, Patient, people)
    await bulk(db, DoseRecord, doses)
    await bulk(db, Visit, visit_list)
    return Seeded(patients, sites)


def local_date(now: datetime) -> date:
    """The sites' local date at `now`."""
    return now.astimezone(ZoneInfo(TZ)).date()


def dose_row(patient: int, times: schedule.DoseTimes, state: str) -> dict[str, Any]:
    """A dose row of one day, scheduled or reminded."""
    reminded = state == "reminded"
    return {"patient_id": patient, "local_date": times.local_date, "due_at": times.due_at,
            "state": state, "reminded_at": times.due_at if reminded else None,
            "follow_up_at": times.follow_up_at, "followed_up_at": None, "snoozes": 0,
            "snoozed_until": None, "cutoff_at": times.cutoff_at, "answered_at": None,
            "closed_at": None, "skip_reason": None, "late_answer": None, "late_answer_at": None,
            "hold_for_visit": None,
            "next_action_at": times.follow_up_at if reminded else times.due_at}


def visit_rows(protocol: Protocol, patient: int, baseline: date,
               today: date) -> list[dict[str, Any]]:
    """The protocol's visits of a patient: those before today done, the rest planned."""
    rows = []
    for template in protocol.visits.table:
        target = baseline + timedelta(days=template.day)
        rows.append({"patient_id": patient, "name": template.name, "target_date": target,
                     "window_start": target - timedelta(days=template.window_minus),
                     "window_end": target + timedelta(days=template.window_plus),
                     "scheduled_date": target,
                     "status": "done" if target < today else "planned",
                     "done_date": target if target < today else None,
                     "out_of_window": False, "revision": 0,
                     "next_notice_at": None if target < today else _first_notice_at(
                         protocol, template.name, target, today)})
    return rows


_NOTICE_AT: dict[tuple[int, str, date, date], datetime | None] = {}


def _first_notice_at(protocol: Protocol, name: str, target: date,
                     today: date) -> datetime | None:
    """`study.visits.first_notice_at` as of today's local midnight (few distinct targets)."""
    from study.visits import first_notice_at

    key = (id(protocol), name, target, today)
    if key not in _NOTICE_AT:
        start = datetime.combine(today, datetime.min.time(), tzinfo=ZoneInfo(TZ))
        _NOTICE_AT[key] = first_notice_at(protocol, name, target, TZ, start)
    return _NOTICE_AT[key]


# -- the fake providers, in their own process ----------------------------------------------

@dataclass
class Fakes:
    """The fake Bot API and Twilio API process (see bench/fakes.py)."""

    process: subprocess.Popen[str]
    telegram: str
    twilio: str

    async def stats(self, *, calls: bool = False, reset: bool = False) -> dict[str, Any]:
        query = {"calls": "1"} if calls else {}
        if reset:
            query["reset"] = "1"
        async with aiohttp.ClientSession() as http, \
                http.get(f"{self.telegram}/stats", params=query) as response:
            return dict(await response.json())

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()


@contextlib.contextmanager
def fakes(*, rate: float = 0.0, chat_rate: float = 0.0) -> Iterator[Fakes]:
    """Start bench/fakes.py; its URLs come back on its first line of output."""
    process = subprocess.Popen(
        [PYTHON, str(ROOT / "bench" / "fakes.py"), "--rate", str(rate), "--chat-rate",
         str(chat_rate)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert process.stdout is not None
    urls = json.loads(process.stdout.readline())
    handle = Fakes(process, urls["telegram"], urls["twilio"])
    try:
        yield handle
    finally:
        handle.stop()


# -- signed Twilio webhooks ----------------------------------------------------------------

_sids = itertools.count(1)


def sms_form(sender: str, body: str, to: str = "+10000000000") -> dict[str, str]:
    """An inbound SMS form as Twilio posts it."""
    sid = f"SM{os.getpid():08x}{next(_sids):024x}"
    return {"ToCountry": "CN", "SmsMessageSid": sid, "NumMedia": "0", "SmsSid": sid,
            "SmsStatus": "received", "Body": body, "To": to, "NumSegments": "1",
            "MessageSid": sid, "AccountSid": ACCOUNT, "From": sender, "ApiVersion": "2010-04-01"}


def signed(url: str, form: dict[str, str]) -> dict[str, str]:
    """The headers Twilio sends with this form posted to `url`."""
    return {"X-Twilio-Signature": RequestValidator(AUTH_TOKEN).compute_signature(url, form)}


# -- processes -----------------------------------------------------------------------------

def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def wait_http(url: str, within: float = 30.0) -> None:
    """Wait until `url` answers 200."""
    deadline = time.monotonic() + within
    async with aiohttp.ClientSession() as http:
        while True:
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with http.get(url) as response:
                    if response.status == 200:
                        return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} never answered")
            await asyncio.sleep(0.1)


@contextlib.contextmanager
def served(command: list[str], port: int, *, cwd: Path, env: dict[str, str] | None = None,
           within: float = 30.0) -> Iterator[subprocess.Popen[bytes]]:
    """A server process, once it answers on `port`'s /healthz; stopped with SIGTERM (killed if
    it does not stop within 30 s)."""
    process = subprocess.Popen(command, cwd=cwd, env=env)
    try:
        asyncio.run(wait_http(f"http://127.0.0.1:{port}/healthz", within=within))
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()


# -- the bare baseline server -----------------------------------------------------------------

EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response />'
After = Callable[[Mapping[str, Any]], Awaitable[None]]


def baseline_app(db: Database, public_url: str, then: After | None = None) -> web.Application:
    """What a webhook costs at least: check Twilio's signature, insert the raw message, run
    `then` with the form (if given), answer empty TwiML; and /healthz."""
    validator = RequestValidator(AUTH_TOKEN)

    async def sms(request: web.Request) -> web.Response:
        form = await request.post()
        signature = request.headers.get("X-Twilio-Signature", "")
        if not validator.validate(public_url + request.path_qs, form, signature):
            raise web.HTTPForbidden()
        async with db.write() as session:
            await session.execute(insert(InboundMessage).values(
                channel="sms", external_id=str(form["MessageSid"]), sender=str(form["From"]),
                text=str(form.get("Body", "")), payload={}, received_at=START))
        if then is not None:
            await then(form)
        return web.Response(text=EMPTY_TWIML, content_type="application/xml")

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_post("/twilio/sms", sms)
    app.router.add_get("/healthz", healthz)
    return app


def vm_status(pid: int) -> dict[str, int]:
    """VmHWM, VmRSS... of a process, in kB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Vm"):
            key, _, rest = line.partition(":")
            values[key] = int(rest.split()[0])
    return values


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

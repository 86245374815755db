"""Exactly once: concurrent workers on PostgreSQL, and a worker killed in the middle of a
fan-out (SIGKILL) then restarted."""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select

from engage.clock import SimulatedClock, SystemClock
from scheduler.dispatcher import OutboxSender
from storage.db import Database
from storage.models import OutboundMessage, Patient
from tests import ROOT as PROJECT_ROOT
from tests.workers.dispatch_support import SITE, FakeChannel, insert_rows, row, seed_site
from trial.protocol import Protocol

ROOT = PROJECT_ROOT
log = logging.getLogger(__name__)


async def _statuses(db: Database) -> dict[str, int]:
    async with db.read() as session:
        result = await session.execute(
            select(OutboundMessage.status, func.count()).group_by(OutboundMessage.status))
        return {r[0]: r[1] for r in result.all()}


@pytest.mark.postgres
async def test_four_workers_send_5000_reminders_exactly_once(
        pg_db: Database, postgres_url: str, protocol: Protocol, clock: SimulatedClock) -> None:
    now = clock.now()
    await seed_site(pg_db, now, coordinator=False)
    async with pg_db.write() as session:
        await session.execute(insert(Patient), [
            {"subject_id": f"S01-{i:04d}", "site_id": SITE, "baseline": now.date(),
             "dose_time": "08:00", "tz": "Asia/Shanghai", "language": "zh",
             "telegram_id": 10_000 + i, "created_at": now} for i in range(5000)])
    async with pg_db.read() as session:
        patients = dict((await session.execute(select(Patient.telegram_id, Patient.id))).all())
    await insert_rows(pg_db, [row(f"dose:reminder:{i}", address=str(10_000 + i), now=now,
                                  patient_id=patients[10_000 + i]) for i in range(5000)])
    channel = FakeChannel("telegram")
    workers = [Database(postgres_url, pool_size=5) for _ in range(4)]
    try:
        dispatchers = [OutboxSender(db, protocol, {"telegram": channel}, clock,
                                  worker_id=f"w{n}", rates={}, concurrency=50)
                       for n, db in enumerate(workers)]
        handled = await asyncio.wait_for(
            asyncio.gather(*(d.run_once() for d in dispatchers)), 60)
    finally:
        for db in workers:
            await db.dispose()
    sends = collections.Counter(s.message.message_id for s in channel.sent)
    assert len(sends) == 5000
    assert set(sends.values()) == {1}
    assert sum(handled) == 5000
    assert all(h > 0 for h in handled), handled  # all four really took part
    assert await _statuses(pg_db) == {"sent": 5000}


def _sends(path: Path) -> list[int]:
    if not path.exists():
        return []
    lines = path.read_text().split("\n")
    return [int(line) for line in lines[:-1] if line]  # a torn last line is not a send


def _start(url: str, sends: Path, worker_id: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.workers.dispatch_worker", url, str(sends), worker_id,
         "2.0", "0.003"], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


async def _wait_for(condition: object, within: float) -> None:
    deadline = time.monotonic() + within
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_killed_worker_loses_nothing_and_resends_only_its_in_flight_rows(
        db: Database, db_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    total = 1500
    now = SystemClock().now()
    ids = await insert_rows(db, [row(f"dose:reminder:{i}", address=str(20_000 + i), now=now)
                                 for i in range(total)])
    sends = tmp_path / "sends.log"
    first = _start(db_url, sends, "first")
    try:
        await _wait_for(lambda: len(_sends(sends)) >= 300 or first.poll() is not None, 30)
        assert first.poll() is None, first.stderr.read() if first.stderr else ""
        first.send_signal(signal.SIGKILL)
        first.wait(5)
    finally:
        if first.poll() is None:
            first.kill()
    sent_before = _sends(sends)
    async with db.read() as session:
        in_flight = set((await session.execute(select(OutboundMessage.id).where(
            OutboundMessage.status == "sending"))).scalars())
    assert 0 < len(sent_before) < total  # killed in the middle of the fan-out
    # Never more leased than it sends at once (none, if killed between two batches).
    assert len(in_flight) <= 20

    second = _start(db_url, sends, "second")
    try:
        async def drained() -> bool:
            return (await _statuses(db)) == {"sent": total}

        deadline = time.monotonic() + 60
        while not await drained():
            assert second.poll() is None, second.stderr.read() if second.stderr else ""
            assert time.monotonic() < deadline, await _statuses(db)
            await asyncio.sleep(0.1)
        second.send_signal(signal.SIGTERM)
        assert second.wait(10) == 0
    finally:
        if second.poll() is None:
            second.kill()
    counts = collections.Counter(_sends(sends))
    assert set(counts) == set(ids)  # nothing lost
    resent = {mid for mid, n in counts.items() if n > 1}
    assert max(counts.values()) <= 2
    assert resent <= in_flight  # duplicates only among the rows in flight at the kill
    request.node.user_properties += [("in_flight_at_kill", len(in_flight)),
                                     ("resent", len(resent))]
    log.info("killed with %d rows in flight; %d of them sent again", len(in_flight),
             len(resent))

"""A dispatcher worker process for the crash test: sends through a fake channel that appends
each accepted message id to a file (fsync'd), until SIGTERM (graceful) or SIGKILL.

Usage: python -m tests.workers.dispatch_worker URL SENDS_FILE WORKER_ID LEASE_SECONDS DELAY
"""

from __future__ import annotations

import asyncio
import signal
import sys
from datetime import timedelta
from pathlib import Path

from engage.clock import SystemClock
from scheduler.dispatcher import OutboxSender
from storage.db import Database
from tests.workers.dispatch_support import FakeChannel
from trial.protocol import load_protocol


async def main(url: str, sends: Path, worker_id: str, lease: float, delay: float) -> None:
    db = Database(url)
    channel = FakeChannel("telegram", delay=delay, log_path=sends)
    dispatcher = OutboxSender(db, load_protocol(), {"telegram": channel}, SystemClock(),
                            worker_id=worker_id, lease=timedelta(seconds=lease), rates={},
                            concurrency=20, poll_interval=0.1)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await dispatcher.run(stop)
    await db.dispose()


if __name__ == "__main__":
    url, sends, worker_id, lease, delay = sys.argv[1:6]
    asyncio.run(main(url, Path(sends), worker_id, float(lease), float(delay)))

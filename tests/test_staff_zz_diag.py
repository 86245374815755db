import time
import scheduler.digest as d
from tests.test_simulation_doses import _run

TOTAL = [0.0, 0]

async def test_diag(sqlite_db, protocol):
    orig = d.plan_digests
    async def timed(db, protocol, now):
        t = time.monotonic()
        try:
            return await orig(db, protocol, now)
        finally:
            TOTAL[0] += time.monotonic() - t; TOTAL[1] += 1
    d.STEPS[:] = [("digest", timed)]
    started = time.monotonic()
    try:
        await _run(sqlite_db, protocol, 146, 48)
    finally:
        print("\nTOTAL", time.monotonic() - started, "digest", TOTAL)

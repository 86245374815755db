"""Outbox claiming, leases and status callbacks, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from engage.clock import SimulatedClock
from storage import outbox
from storage.db import Database
from storage.models import DeliveryEvent
from tests.workers.dispatch_support import insert_rows, message, row

CHANNELS = ("telegram", "sms")


async def _claim(db: Database, clock: SimulatedClock, token: str, *, lane: str = "routine",
                 limit: int = 10, lease: timedelta = timedelta(minutes=1)) -> list[int]:
    async with db.write() as session:
        rows = await outbox.claim(session, lane=lane, channels=CHANNELS, now=clock.now(),
                                  limit=limit)
        outbox.lease(rows, token=token, now=clock.now(),
                     until=clock.now() + lease)
        return [r.id for r in rows]


async def _events(db: Database, message_id: int) -> list[str]:
    async with db.read() as session:
        return list((await session.execute(
            select(DeliveryEvent.status).where(DeliveryEvent.message_id == message_id)
            .order_by(DeliveryEvent.id))).scalars())


async def test_claim_takes_due_rows_of_its_lane_and_channels(db: Database,
                                                             clock: SimulatedClock) -> None:
    now = clock.now()
    due, later, safety, wechat = await insert_rows(db, [
        row("due", address="1", now=now),
        row("later", address="2", now=now, due_at=now + timedelta(minutes=5)),
        row("safety", address="3", now=now, lane="safety"),
        row("wechat", address="4", now=now, channel="wechat"),
    ])
    assert await _claim(db, clock, "w1:r1", lease=timedelta(hours=1)) == [due]
    assert await _claim(db, clock, "w1:r2") == []  # leased rows are not claimed again
    assert await _claim(db, clock, "w1:s1", lane="safety") == [safety]
    leased = await message(db, due)
    assert (leased.status, leased.leased_by, leased.attempts) == ("sending", "w1:r1", 1)
    clock.advance(timedelta(minutes=5))
    assert await _claim(db, clock, "w1:r3", limit=1) == [later]
    assert (await message(db, wechat)).status == "queued"


async def test_expired_lease_is_reclaimed_and_the_old_owner_cannot_write(
        db: Database, clock: SimulatedClock) -> None:
    (mid,) = await insert_rows(db, [row("m", address="1", now=clock.now())])
    assert await _claim(db, clock, "dead:r1") == [mid]
    clock.advance(timedelta(seconds=30))
    assert await _claim(db, clock, "w2:r1") == []  # lease still valid
    clock.advance(timedelta(seconds=31))
    assert await _claim(db, clock, "w2:r2") == [mid]
    async with db.write() as session:
        assert not await outbox.complete(session, message_id=mid, token="dead:r1",
                                         provider_id="old", status="sent", now=clock.now())
        assert not await outbox.fail(session, message_id=mid, token="dead:r1", now=clock.now(),
                                     error="late")
    async with db.write() as session:
        assert await outbox.complete(session, message_id=mid, token="w2:r2",
                                     provider_id="new", status="sent", now=clock.now())
    done = await message(db, mid)
    assert (done.status, done.provider_id, done.attempts, done.leased_by) == (
        "sent", "new", 2, None)
    assert done.sent_at == clock.now()
    assert await _events(db, mid) == ["reclaimed", "sent"]


async def test_reclaim_requeues_only_expired_leases(db: Database,
                                                    clock: SimulatedClock) -> None:
    first, second = await insert_rows(db, [row("a", address="1", now=clock.now()),
                                           row("b", address="2", now=clock.now())])
    await _claim(db, clock, "dead:r1", limit=1)
    clock.advance(timedelta(minutes=2))
    await _claim(db, clock, "live:r1", limit=1)  # takes the expired one back, not `second`
    async with db.write() as session:
        assert await outbox.reclaim(session, now=clock.now()) == 0
    clock.advance(timedelta(minutes=2))
    async with db.write() as session:
        assert await outbox.reclaim(session, now=clock.now()) == 1
    assert (await message(db, first)).status == "queued"
    assert (await message(db, second)).status == "queued"


async def test_release_and_uncounted_retry_give_the_attempt_back(
        db: Database, clock: SimulatedClock) -> None:
    (mid,) = await insert_rows(db, [row("m", address="1", now=clock.now())])
    await _claim(db, clock, "w:r1")
    later = clock.now() + timedelta(seconds=3)
    async with db.write() as session:
        assert await outbox.retry(session, message_id=mid, token="w:r1", now=clock.now(),
                                  error="429", due_at=later, count=False)
    queued = await message(db, mid)
    assert (queued.status, queued.attempts, queued.due_at) == ("queued", 0, later)


async def _sent(db: Database, clock: SimulatedClock, provider_id: str) -> int:
    (mid,) = await insert_rows(db, [row(provider_id, address="+8613800000000", channel="sms",
                                        now=clock.now())])
    await _claim(db, clock, f"w:{provider_id}")
    async with db.write() as session:
        assert await outbox.complete(session, message_id=mid, token=f"w:{provider_id}",
                                     provider_id=provider_id, status="queued", now=clock.now())
    return mid


async def test_status_callbacks_only_move_forward(db: Database, clock: SimulatedClock) -> None:
    mid = await _sent(db, clock, "SM1")
    assert (await message(db, mid)).status == "sent"

    async def callback(status: str, provider_id: str = "SM1") -> bool:
        async with db.write() as session:
            return await outbox.record_status(session, provider_id=provider_id, status=status,
                                              now=clock.now(), detail="cb")

    assert await callback("delivered")
    assert not await callback("sent")  # arrived late
    assert not await callback("failed")  # never replaces delivered
    assert not await callback("delivered")  # duplicate
    assert (await message(db, mid)).status == "delivered"
    assert not await callback("delivered", provider_id="SM-unknown")

    other = await _sent(db, clock, "SM2")
    assert await callback("undelivered", "SM2")
    assert not await callback("delivered", "SM2")  # terminal
    failed = await message(db, other)
    assert (failed.status, failed.last_error) == ("undelivered", "cb")
    assert await _events(db, mid) == ["sent", "delivered", "callback", "callback", "callback"]


async def test_status_callback_settles_an_unknown_send_by_message_id(
        db: Database, clock: SimulatedClock) -> None:
    (mid,) = await insert_rows(db, [row("m", address="+8613800000000", channel="sms",
                                        now=clock.now())])
    await _claim(db, clock, "w:r1")
    async with db.write() as session:
        assert await outbox.fail(session, message_id=mid, token="w:r1", now=clock.now(),
                                 error="timeout", status=outbox.UNKNOWN)
    async with db.write() as session:
        assert await outbox.record_status(session, provider_id="SM9", status="delivered",
                                          now=clock.now(), message_id=mid)
    settled = await message(db, mid)
    assert (settled.status, settled.provider_id) == ("delivered", "SM9")
    assert settled.sent_at == clock.now()


async def test_operator_requeues_an_unknown_send(db: Database, clock: SimulatedClock) -> None:
    (mid,) = await insert_rows(db, [row("m", address="1", now=clock.now())])
    await _claim(db, clock, "w:r1")
    async with db.write() as session:
        await outbox.fail(session, message_id=mid, token="w:r1", now=clock.now(),
                          error="timeout", status=outbox.UNKNOWN)
    async with db.write() as session:
        assert await outbox.requeue_unknown(session, message_id=mid, now=clock.now(),
                                            reason="patient says it never arrived")
        assert not await outbox.requeue_unknown(session, message_id=mid, now=clock.now(),
                                                reason="twice")
    assert (await message(db, mid)).status == "queued"

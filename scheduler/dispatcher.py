"""The outbox dispatcher: claims due messages with a lease, sends them outside any transaction,
and records what the provider said.

Two lanes run side by side, each with its own claims and its own bound on sends in flight, so a
10,000-message routine fan-out never queues a safety message behind it; the rate limiter gives
safety messages the next free slot. Before a message goes, the delivery policy
(`trial.delivery.screen`, pure) looks at it and its recipient again: routine messages to a
paused, withdrawn or opted-out patient are cancelled, a patient's message moves off a channel
that cannot reach them, quiet hours hold routine messages to the end of the window, and the
per-recipient daily SMS cap drops the least important routine SMS (the importance table is the
protocol's `[sms.importance]`). Safety messages and replies (the row's `kind`) are never held,
capped or cancelled for a pause. The dispatcher loads, screens, applies the verdict and sends.

Failures: a transient error is retried with exponential backoff and full jitter (a provider's
`retry_after` exactly, for that chat and the whole channel) and given up after `max_attempts`.
A send that may have reached the provider (a timeout after the request was written) becomes
`unknown`. A routine one is never sent again blindly: a status callback (`record_status`) or an
operator (`engage outbox requeue ID`) decides. A safety one must not be lost: after
`unknown_check` seconds the provider is asked whether it has it (a channel that can say:
`messages.channel.ConfirmsSends`) and it is sent again when the provider has none or cannot be
asked; when its fate is still unknown after `unknown_attempts` attempts, the coordinators are
told (a routine alert, in the digest) and it waits for an operator.

A permanent error fails the row at once; if the recipient is unreachable or opted out, the flag
is set (audited), the site's coordinators get an alert and a message, and a safety message to a
patient goes again by SMS.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from messages.channel import (
    Channel,
    Choice,
    ConfirmsSends,
    OutgoingMessage,
    PermanentSendError,
    TransientSendError,
)
from scheduler.ratelimit import ChannelRate, Monotonic, RateLimiter, Sleep
from storage import audit, outbox
from storage.audit import Actor
from storage.db import Database
from storage.models import OutboundMessage, Patient, Site, Staff
from study import alerts, delivery_status, optout, outgoing
from study.recipients import contact_point, patient_route, reachable
from trial import delivery
from trial.clock import Clock
from trial.protocol import Protocol

log = logging.getLogger(__name__)

SYSTEM = Actor.system("dispatcher")
LANES = (outbox.SAFETY, outbox.ROUTINE)
# Safety rows claimed before the lane's others (template id prefixes): the replies that say call
# 120 now and the alert pages, ahead of same-day replies and notices when many are due at once.
SAFETY_FIRST = ("report.reply_emergency", "report.unregistered_emergency",
                "report.reply_unreached", "alert.page")

# Statuses that used one of the day's SMS (an unknown one may have).
_COUNTS_FOR_CAP = (outbox.SENT, outbox.DELIVERED, outbox.READ, outbox.UNKNOWN,
                   outbox.UNDELIVERED)


def backoff(attempt: int, *, base: float, cap: float, rng: random.Random) -> float:
    """Seconds before retry number `attempt` (1-based): exponential with full jitter."""
    return rng.uniform(0.0, min(cap, base * 2 ** max(0, attempt - 1)))


class OutboxSender:
    """Sends the outbox through the channels; one per worker process (`worker_id` unique).
    (aiogram's `Dispatcher`, in bot/channels/telegram, routes incoming Telegram updates.)"""

    def __init__(self, db: Database, protocol: Protocol, channels: Mapping[str, Channel],
                 clock: Clock, *, worker_id: str, lease: timedelta = timedelta(seconds=60),
                 concurrency: int = 50, safety_concurrency: int = 20, max_attempts: int = 8,
                 backoff_base: float = 2.0, backoff_cap: float = 600.0,
                 safety_backoff_cap: float = 30.0, telegram_rate: float = 29.0,
                 telegram_chat_rate: float = 0.95, sms_rate: float = 1.0,
                 rates: Mapping[str, ChannelRate] | None = None, max_rate_wait: float = 5.0,
                 send_timeout: float | None = None, poll_interval: float = 1.0,
                 unknown_check: float = 10.0, unknown_attempts: int = 3,
                 record_wait: float = 0.005, record_batch: int = 25,
                 rng: random.Random | None = None, monotonic: Monotonic = time.monotonic,
                 sleep: Sleep = asyncio.sleep) -> None:
        self.db = db
        self.protocol = protocol
        self.channels = dict(channels)
        self.clock = clock
        self.worker_id = worker_id[:48]
        self.lease = lease
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_caps = {outbox.SAFETY: safety_backoff_cap, outbox.ROUTINE: backoff_cap}
        self.concurrency = {outbox.SAFETY: safety_concurrency, outbox.ROUTINE: concurrency}
        self.max_rate_wait = max_rate_wait
        # A send must end well inside its lease, or another worker could take the row over.
        self.send_timeout = send_timeout or lease.total_seconds() / 3
        self.poll_interval = poll_interval
        # A safety message of unknown fate: looked at again after `unknown_check` seconds,
        # while it has had fewer than `unknown_attempts` attempts (the first send included).
        self.unknown_check = unknown_check
        self.unknown_attempts = unknown_attempts
        self.rng = rng or random.Random()
        if rates is None:
            rates = {"telegram": ChannelRate(telegram_rate, telegram_chat_rate),
                     "sms": ChannelRate(sms_rate)}
        self.limits = RateLimiter(rates, monotonic=monotonic, sleep=sleep)
        self._sequence = itertools.count(1)
        # Claimed safety rows of unknown fate, to be confirmed with the provider before a resend.
        self._resolving: set[int] = set()
        self._wakes = {lane: asyncio.Event() for lane in LANES}
        self._stop: asyncio.Event | None = None
        # Successful sends are recorded in batches: one commit for many rows, not one each.
        # A batch gathers for up to `record_wait` seconds or `record_batch` rows.
        self.record_wait = record_wait
        self.record_batch = record_batch
        self._completions: list[tuple[int, str, str, str, asyncio.Future[None]]] = []
        self._batch_full = asyncio.Event()
        self._recorder: asyncio.Task[None] | None = None

    # --- public face ------------------------------------------------------------------------

    def wake(self) -> None:
        """Something was queued (a safety message): claim now, not at the next poll."""
        for event in self._wakes.values():
            event.set()

    async def run_once(self) -> int:
        """Claim what is due as of `clock.now()`, send it, and return how many rows were handled
        (sent, failed, held, cancelled or dropped); rows queued meanwhile are included."""
        handled = 0
        for _ in range(5):  # follow-ups (a reroute, a coordinator notice) are due at once
            done = sum([await self._pump(lane, None) for lane in LANES])
            handled += done
            if done == 0:
                break
        return handled

    async def run(self, stop: asyncio.Event) -> None:
        """Dispatch until `stop` is set; in-flight sends finish, everything else stays queued."""
        self._stop = stop
        await asyncio.gather(*(self._pump(lane, stop) for lane in LANES))

    # --- the lane loop ----------------------------------------------------------------------

    async def _pump(self, lane: str, stop: asyncio.Event | None) -> int:
        limit = self.concurrency[lane]
        low_water = max(1, limit // 5)  # claim in batches, not one row per finished send
        tasks: set[asyncio.Task[None]] = set()
        handled, exhausted = 0, False
        while stop is None or not stop.is_set():
            tasks = {task for task in tasks if not task.done()}
            free = limit - len(tasks)
            if not exhausted and free >= low_water:
                try:
                    count, rows, token = await self._claim(lane, free)
                except Exception:
                    if stop is None:
                        raise
                    log.exception("claiming the %s lane failed; retrying", lane)
                    count, rows, token = 0, [], ""
                handled += count
                tasks.update(asyncio.create_task(self._deliver(row, token, lane, stop))
                             for row in rows)
                exhausted = count < free
                continue
            if stop is None:
                if not tasks:
                    break
                await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                continue
            await self._idle(lane, tasks, stop)
            exhausted = False
        if tasks:
            await asyncio.gather(*tasks)
        await self._recorded_all()
        return handled

    async def _idle(self, lane: str, tasks: set[asyncio.Task[None]],
                    stop: asyncio.Event) -> None:
        wake = self._wakes[lane]
        helpers = [asyncio.create_task(stop.wait()), asyncio.create_task(wake.wait())]
        try:
            await asyncio.wait([*helpers, *tasks], timeout=self.poll_interval,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            for helper in helpers:
                helper.cancel()
            wake.clear()

    # --- claiming and screening -------------------------------------------------------------

    async def _claim(self, lane: str, limit: int) -> tuple[int, list[OutboundMessage], str]:
        token = f"{self.worker_id}:{lane[0]}{next(self._sequence)}"
        async with self.db.write() as session:
            now = self.clock.now()
            safety = lane == outbox.SAFETY
            rows = await outbox.claim(session, lane=lane, channels=self.channels, now=now,
                                      limit=limit, first=SAFETY_FIRST if safety else (),
                                      unknown_below=self.unknown_attempts if safety else None)
            if not rows:
                return 0, [], token
            unknown = {row.id: row.channel for row in rows if row.status == outbox.UNKNOWN}
            ready = await self._screen(session, rows, now, token)
            # Ask the channel it went by (a row rerouted to another channel just goes there).
            self._resolving.update(row.id for row in ready if unknown.get(row.id) == row.channel)
            outbox.lease(ready, token=token, now=now, until=now + self.lease)
        return len(rows), ready, token

    async def _screen(self, session: AsyncSession, rows: Sequence[OutboundMessage],
                      now: datetime, token: str) -> list[OutboundMessage]:
        """Cancel, reroute, hold or drop claimed rows; return those to send now."""
        patients = await _by_id(session, Patient, {r.patient_id for r in rows})
        staff = await _by_id(session, Staff, {r.staff_id for r in rows})
        sites = await _by_id(session, Site, {s.site_id for s in staff.values()}
                             | {p.site_id for p in patients.values()})
        ready: list[OutboundMessage] = []
        accepted: dict[str, int] = {}
        accepted_ids: set[int] = set()
        for row in rows:
            patient = patients.get(row.patient_id) if row.patient_id else None
            member = staff.get(row.staff_id) if row.staff_id else None
            tz = _recipient_tz(patient, member, sites)
            verdict = delivery.screen(row, _state(row, patient, member, tz),
                                      quiet=self.protocol.quiet_hours, now=now)
            if verdict.action == delivery.CANCEL:
                outbox.settle(session, row, status=outbox.CANCELLED, now=now,
                              reason=verdict.reason)
                continue
            if verdict.route is not None:  # off a channel that cannot reach the patient
                outbox.note(session, row.id, "rerouted", now,
                            f"{row.channel} unreachable; now {verdict.route.channel}")
                # Rendered again for its new channel (an SMS signed for the patient's site).
                outgoing.reroute(row, verdict.route, signature=outgoing.site_signature(
                    self.protocol, sites.get(patient.site_id) if patient else None,
                    row.language))
            if row.channel not in self.channels:  # rerouted to a channel another worker serves
                outbox.settle(session, row, status=outbox.QUEUED, now=now, due_at=now,
                              reason=f"rerouted to {row.channel}")
                continue
            if verdict.action == delivery.HOLD:
                outbox.settle(session, row, status=outbox.QUEUED, now=now,
                              due_at=verdict.until, reason=verdict.reason)
                continue
            if verdict.capped:
                drop = await self._over_cap(session, row, tz or ZoneInfo("UTC"), now, token,
                                            accepted, accepted_ids)
                if drop is not None:
                    outbox.settle(session, row, status=outbox.DROPPED, now=now, reason=drop)
                    continue
            ready.append(row)
        return ready

    async def _over_cap(self, session: AsyncSession, row: OutboundMessage, tz: ZoneInfo,
                        now: datetime, token: str, accepted: dict[str, int],
                        accepted_ids: set[int]) -> str | None:
        """Why a routine SMS must be dropped for the daily cap, or None if it fits."""
        sms = self.protocol.sms
        start, end = delivery.local_day(now, tz)
        # The cap limits routine SMS: safety SMS are neither capped nor counted against it.
        to_address = (OutboundMessage.channel == "sms", OutboundMessage.address == row.address,
                      OutboundMessage.lane == outbox.ROUTINE)
        used = (await session.execute(select(func.count()).where(
            *to_address, OutboundMessage.status.in_(_COUNTS_FOR_CAP),
            OutboundMessage.sent_at >= start, OutboundMessage.sent_at < end))).scalar_one()
        in_flight = (await session.execute(select(func.count()).where(
            *to_address, OutboundMessage.status == outbox.SENDING,
            OutboundMessage.leased_by != token))).scalar_one()
        left = delivery.cap_left(sms.daily_cap, used=used, in_flight=in_flight,
                                 accepted=accepted.get(row.address, 0))
        # Routine SMS still to go today compete for what is left: the more important first.
        others = [] if left <= 0 else (await session.execute(select(
            OutboundMessage.id, OutboundMessage.template_id, OutboundMessage.due_at).where(
            *to_address, OutboundMessage.status == outbox.QUEUED, OutboundMessage.due_at < end,
            OutboundMessage.id != row.id))).all()
        drop = delivery.over_cap(
            sms.daily_cap, left, mine=delivery.cap_rank(sms, row.template_id, row.due_at, row.id),
            others=(delivery.cap_rank(sms, template_id, due_at, other_id)
                    for other_id, template_id, due_at in others if other_id not in accepted_ids))
        if drop is not None:
            return drop
        accepted[row.address] = accepted.get(row.address, 0) + 1
        accepted_ids.add(row.id)
        return None

    # --- sending ----------------------------------------------------------------------------

    async def _deliver(self, row: OutboundMessage, token: str, lane: str,
                       stop: asyncio.Event | None) -> None:
        try:
            await self._deliver_one(row, token, lane, stop)
        except Exception:
            log.exception("dispatching message %s failed; its lease will expire", row.id)

    async def _deliver_one(self, row: OutboundMessage, token: str, lane: str,
                           stop: asyncio.Event | None) -> None:
        urgent = lane == outbox.SAFETY
        message = OutgoingMessage(  # the body as queued: the whole text, nothing added
            message_id=row.id, address=row.address, text=row.body,
            choices=tuple(Choice(**choice) for choice in row.choices), image=row.image,
            language=row.language,
            validity_seconds=(self.protocol.sms.validity_period_seconds
                              if row.channel == "sms" else None))
        if row.id in self._resolving:
            self._resolving.discard(row.id)
            if await self._confirmed(row, token, message):
                return
        wait = self.limits.delay(row.channel, row.address, urgent=urgent)
        # Safety rows too: a patient's SMS reply waiting for the 1/s SMS slot must not hold one
        # of the lane's slots while a coordinator's Telegram page waits behind it.
        longest = min(self.lease.total_seconds() / 3, self.max_rate_wait)
        if wait > longest:  # do not sit on a lease and a send slot for that long
            await self._release(row, token, wait, f"rate limit: about {wait:.1f}s to wait")
            return
        await self.limits.acquire(row.channel, row.address, urgent=urgent)
        if stop is not None and stop.is_set():
            await self._release(row, token, 0.0, "dispatcher stopping")
            return
        left = (row.lease_until - self.clock.now()).total_seconds() if row.lease_until else 0.0
        if left < self.send_timeout:
            await self._release(row, token, 0.0, "lease too short to send safely")
            return
        try:
            result = await asyncio.wait_for(self.channels[row.channel].send(message),
                                            timeout=self.send_timeout)
        except TimeoutError:
            await self._transient(row, token, TransientSendError(
                f"no answer within {self.send_timeout:.0f}s", maybe_sent=True))
        except TransientSendError as exc:
            await self._transient(row, token, exc)
        except PermanentSendError as exc:
            await self._permanent(row, token, exc)
        except Exception as exc:  # an adapter bug: not sent as far as we know, so retry
            log.exception("channel %s raised on message %s", row.channel, row.id)
            await self._transient(row, token, TransientSendError(f"{type(exc).__name__}: {exc}"))
        else:
            await self._recorded(row.id, token, result.provider_id, result.status)

    async def _confirmed(self, row: OutboundMessage, token: str,
                         message: OutgoingMessage) -> bool:
        """A safety row of unknown fate, claimed again: ask its channel's provider whether it
        has the message. True if the provider has it (recorded as sent), or could not be asked
        and looks are left (the row waits for the next); False: send it again now (the provider
        has none, the channel cannot be asked, or this was the last look)."""
        channel = self.channels[row.channel]
        if not isinstance(channel, ConfirmsSends):
            await self._note(row, f"{row.channel} cannot be asked: sent again")
            return False
        try:
            found = await asyncio.wait_for(channel.was_sent(message, row.created_at),
                                           timeout=self.send_timeout)
        except Exception as exc:  # the provider cannot be asked now
            reason = "no answer" if isinstance(exc, TimeoutError) else str(exc)
            if row.attempts >= self.unknown_attempts:
                log.warning("message %s: %s cannot confirm it (%s); sent again", row.id,
                            row.channel, reason)
                await self._note(row, f"not confirmed ({reason}): sent again")
                return False
            # Unknown again until the next look (a status callback kept meanwhile applies).
            now = self.clock.now()
            follow_ups: list[bool] = []
            await self._write(lambda s: self._unknown(s, row, token, now,
                                                      f"not confirmed: {reason}", follow_ups))
            if any(follow_ups):
                self.wake()
            return True
        if found is not None and not await self._known_elsewhere(found.provider_id, row.id):
            log.info("message %s: %s confirms it was sent (%s)", row.id, row.channel,
                     found.provider_id)
            await self._recorded(row.id, token, found.provider_id, found.status)
            return True
        log.warning("message %s: %s has no record of it; sent again", row.id, row.channel)
        await self._note(row, f"{row.channel} has no record of it: sent again")
        return False

    async def _known_elsewhere(self, provider_id: str, message_id: int) -> bool:
        """Whether another outbox row has this provider id (an earlier message with the
        same text to the same recipient): then it is not this one."""
        async with self.db.read() as session:
            return (await session.execute(select(OutboundMessage.id).where(
                OutboundMessage.provider_id == provider_id,
                OutboundMessage.id != message_id).limit(1))).first() is not None

    async def _note(self, row: OutboundMessage, detail: str) -> None:
        async def work(session: AsyncSession) -> bool:
            outbox.note(session, row.id, outbox.RECHECK, self.clock.now(), detail)
            return True

        await self._write(work)

    async def _recorded(self, message_id: int, token: str, provider_id: str,
                        status: str) -> None:
        """Record a successful send; returns once its batch is committed.

        The send slot is held until then, so a worker never has more rows leased than sends
        in flight: a crash resends at most that many.
        """
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._completions.append((message_id, token, provider_id, status, done))
        if len(self._completions) >= self.record_batch:
            self._batch_full.set()
        if self._recorder is None or self._recorder.done():
            self._recorder = asyncio.create_task(self._record_completions())
        await done

    async def _recorded_all(self) -> None:
        """Wait until every send queued for recording is committed (or its write gave up)."""
        while self._recorder is not None and not self._recorder.done():
            await asyncio.shield(self._recorder)

    async def _record_completions(self) -> None:
        while self._completions:
            if len(self._completions) < self.record_batch:
                # Gather: with sends finishing a few a millisecond, one commit takes many.
                self._batch_full.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._batch_full.wait(), self.record_wait)
            batch, self._completions = self._completions[:500], self._completions[500:]
            now = self.clock.now()
            follow_ups: list[bool] = []  # callbacks kept while in flight queued new rows

            async def work(session: AsyncSession,
                           batch: list[tuple[int, str, str, str, asyncio.Future[None]]] = batch,
                           now: datetime = now, follow_ups: list[bool] = follow_ups) -> bool:
                done = await outbox.complete_many(session, [item[:4] for item in batch],
                                                  now=now)
                if len(done) < len(batch):
                    log.warning("%d sends finished after their lease was taken over",
                                len(batch) - len(done))
                follow_ups.append(await delivery_status.apply_early(
                    session, done, now=now, channels=self.channels))
                return True

            try:
                await self._write(work)
                if any(follow_ups):
                    self.wake()
            except Exception:
                log.exception("recording %d sends failed; their leases will expire and they "
                              "will be sent again", len(batch))
            finally:
                for *_, done in batch:
                    if not done.done():
                        done.set_result(None)

    async def _release(self, row: OutboundMessage, token: str, after: float,
                       reason: str) -> None:
        now = self.clock.now()
        await self._write(lambda s: outbox.release(
            s, message_id=row.id, token=token, now=now, due_at=now + timedelta(seconds=after),
            reason=reason))

    async def _transient(self, row: OutboundMessage, token: str,
                         exc: TransientSendError) -> None:
        now = self.clock.now()
        if exc.maybe_sent:
            log.warning("message %s may have reached %s (%s): left as unknown", row.id,
                        row.channel, exc)
            follow_ups: list[bool] = []
            await self._write(lambda s: self._unknown(s, row, token, now, f"maybe sent: {exc}",
                                                      follow_ups))
            if any(follow_ups):
                self.wake()
            return
        if exc.retry_after is not None:
            # The provider said how long: that chat and the whole channel wait exactly that.
            self.limits.hold(row.channel, exc.retry_after, row.address)
            self.limits.hold(row.channel, exc.retry_after)
            due = now + timedelta(seconds=exc.retry_after)
            await self._write(lambda s: outbox.retry(
                s, message_id=row.id, token=token, now=now, error=str(exc), due_at=due,
                count=False))
            return
        if row.attempts >= self.max_attempts:
            await self._give_up(row, token, f"{exc} (after {row.attempts} attempts)")
            return
        delay = backoff(row.attempts, base=self.backoff_base, cap=self.backoff_caps[row.lane],
                        rng=self.rng)
        due = now + timedelta(seconds=max(delay, 0.001))
        await self._write(lambda s: outbox.retry(
            s, message_id=row.id, token=token, now=now, error=str(exc), due_at=due))

    async def _unknown(self, session: AsyncSession, row: OutboundMessage, token: str,
                       now: datetime, error: str, follow_ups: list[bool]) -> bool:
        """Leave a maybe-sent row `unknown`; a status callback that came meanwhile settles it.

        A safety row is looked at again in `unknown_check` seconds while it has had fewer than
        `unknown_attempts` attempts; after the last, the coordinators are told.
        """
        safety = row.lane == outbox.SAFETY
        again = safety and row.attempts < self.unknown_attempts
        due = now + timedelta(seconds=self.unknown_check) if again else None
        if not await outbox.fail(session, message_id=row.id, token=token, now=now,
                                 status=outbox.UNKNOWN, error=error, due_at=due):
            return False
        follow_ups.append(await delivery_status.apply_early(
            session, [row.id], now=now, channels=self.channels))
        if safety and not again:
            follow_ups.append(await self._unconfirmed(session, row, now, error))
        return True

    async def _unconfirmed(self, session: AsyncSession, row: OutboundMessage, now: datetime,
                           reason: str) -> bool:
        """A safety message whose fate is still unknown after its last attempt: tell the
        patient's coordinators at once (a routine alert, in the digest). A page to staff is
        left to the alert's escalation; a stranger's reply to their open alert's pages."""
        status = (await session.execute(select(OutboundMessage.status).where(
            OutboundMessage.id == row.id))).scalar_one()
        if status != outbox.UNKNOWN:  # a status callback settled it meanwhile
            return False
        log.error("safety message %s to %s could not be confirmed after %d attempts (%s)",
                  row.id, row.channel, row.attempts, reason)
        patient = await session.get(Patient, row.patient_id) if row.patient_id else None
        if patient is None:
            return False
        await alerts.notify_site(
            session, site_id=patient.site_id, patient=patient, kind="delivery_failed",
            summary=f"{patient.subject_id}: safety message {row.id} by {row.channel} not "
                    f"confirmed as sent after {row.attempts} attempts: {reason}",
            message_id="delivery.unconfirmed", now=now, actor=SYSTEM, lane=outbox.SAFETY,
            params={"subject": patient.subject_id, "channel": row.channel,
                    "message": row.id, "reason": reason})
        return True

    async def _permanent(self, row: OutboundMessage, token: str,
                         exc: PermanentSendError) -> None:
        if not (exc.unreachable or exc.opted_out):
            await self._give_up(row, token, f"{exc.code} {exc}".strip())
            return
        now = self.clock.now()
        follow_up = False

        async def work(session: AsyncSession) -> bool:
            nonlocal follow_up
            if not await outbox.fail(session, message_id=row.id, token=token, now=now,
                                     error=f"{exc.code} {exc}".strip()):
                return False
            follow_up = await self._unreachable(session, row, exc, now)
            return True

        await self._write(work)
        if follow_up:
            self.wake()

    async def _give_up(self, row: OutboundMessage, token: str, error: str) -> None:
        now = self.clock.now()
        log.error("giving up on message %s to %s: %s", row.id, row.channel, error)

        async def work(session: AsyncSession) -> bool:
            if not await outbox.fail(session, message_id=row.id, token=token, now=now,
                                     error=error):
                return False
            patient = await session.get(Patient, row.patient_id) if row.patient_id else None
            if patient is not None:
                await alerts.notify_site(
                    session, site_id=patient.site_id, patient=patient, kind="delivery_failed",
                    summary=f"{patient.subject_id}: message {row.id} failed: {error}",
                    message_id="delivery.failed", now=now, actor=SYSTEM,
                    params={"subject": patient.subject_id, "count": row.attempts,
                            "reason": error})
            return True

        await self._write(work)
        self.wake()

    async def _unreachable(self, session: AsyncSession, row: OutboundMessage,
                           exc: PermanentSendError, now: datetime) -> bool:
        """Mark the recipient unreachable on the row's channel and tell the coordinators;
        reroute a patient's safety message. True if new rows were queued."""
        reason = f"{row.channel} refused: {exc.code} {exc}".strip()
        if row.patient_id is not None:
            return await optout.message_undeliverable(session, row, now=now, reason=reason,
                                                      protocol=self.protocol,
                                                      opted_out=exc.opted_out)
        if row.staff_id is not None:
            member = await session.get(Staff, row.staff_id, with_for_update=True)
            if member is None:
                return False
            if row.channel == "telegram":
                changed = audit.change(session, member, at=now, actor=SYSTEM, reason=reason,
                                       telegram_reachable=False)
            else:  # a contact point (a WeCom userid that left the corp or the app's range)
                point = contact_point(member, row.channel)
                changed = point is not None and audit.change(
                    session, point, at=now, actor=SYSTEM, reason=reason, reachable=False)
            if not changed:
                return False
            if member.site_id is not None:
                await alerts.notify_site(
                    session, site_id=member.site_id, patient=None, kind="unreachable",
                    summary=f"staff {member.id} ({member.role}): {reason}", now=now,
                    message_id="delivery.staff_unreachable", exclude_staff=member.id,
                    params={"name": member.name, "role": member.role, "channel": row.channel,
                            "reason": str(exc)}, actor=SYSTEM)
                return True
        return False

    async def _write(self, work: Callable[[AsyncSession], Awaitable[bool]]) -> None:
        """Record an outcome; retried briefly, since losing it means sending the row again."""
        for attempt in range(3):
            try:
                async with self.db.write() as session:
                    if not await work(session):
                        log.warning("lease lost before the outcome was recorded (%s)",
                                    self.worker_id)
                return
            except Exception:
                if attempt == 2:
                    raise
                log.exception("recording a send outcome failed; retrying")
                await asyncio.sleep(0.2 * (attempt + 1))


async def _by_id(session: AsyncSession, model: Any, ids: set[Any]) -> dict[Any, Any]:
    wanted = [i for i in ids if i is not None]
    if not wanted:
        return {}
    rows = (await session.execute(select(model).where(model.id.in_(wanted)))).scalars().all()
    return {row.id: row for row in rows}


def _state(row: OutboundMessage, patient: Patient | None, member: Staff | None,
           tz: ZoneInfo | None) -> delivery.RecipientState:
    """What the delivery policy needs of a row's recipient (`trial.delivery.screen`)."""
    active = member is None or member.active
    if patient is None:
        return delivery.RecipientState(active=active, tz=tz)
    here = reachable(patient, row.channel)
    return delivery.RecipientState(
        status=patient.status, opted_out=patient.opted_out, active=active, tz=tz,
        reachable=here,
        route=None if here else patient_route(patient, safety=row.lane == outbox.SAFETY))


def _recipient_tz(patient: Patient | None, member: Staff | None,
                  sites: Mapping[str, Site]) -> ZoneInfo | None:
    if patient is not None:
        return ZoneInfo(patient.tz)
    if member is not None and member.site_id is not None and member.site_id in sites:
        return ZoneInfo(sites[member.site_id].tz)
    return None

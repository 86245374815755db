"""Linking a Telegram chat by a one-time code: single use, expiry, attempt limit, races."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import func, select

from engage.clock import SimulatedClock
from storage.db import Database
from storage.models import AuditEntry, LinkAttempt, LinkCode, Patient
from study.linking import LinkOutcome, link_chat
from tests.factories import add_site, enrol
from trial.protocol import Protocol


async def _try(db: Database, protocol: Protocol, chat: int, code: str, clock: SimulatedClock
               ) -> LinkOutcome:
    async with db.write() as session:
        return (await link_chat(session, protocol, chat_id=chat, code=code,
                                now=clock.now())).outcome


async def _telegram_id(db: Database, patient_id: int) -> int | None:
    async with db.read() as session:
        return (await session.get(Patient, patient_id)).telegram_id  # type: ignore[union-attr]


async def test_a_code_links_once_and_is_audited(db: Database, protocol: Protocol,
                                                clock: SimulatedClock) -> None:
    await add_site(db, clock.now())
    enrolled = await enrol(db, protocol, clock.now())
    assert await _try(db, protocol, 555, enrolled.code.lower(), clock) is LinkOutcome.LINKED
    assert await _telegram_id(db, enrolled.patient_id) == 555
    # The same code again, from another chat: used, refused, nothing moves.
    assert await _try(db, protocol, 777, enrolled.code, clock) is LinkOutcome.REFUSED
    assert await _telegram_id(db, enrolled.patient_id) == 555
    async with db.read() as session:
        audit = (await session.execute(select(AuditEntry).where(
            AuditEntry.entity == "patients", AuditEntry.field == "telegram_id"))).scalars().all()
        code = (await session.execute(select(LinkCode))).scalar_one()
    assert [a.new_value for a in audit] == ["555"]
    assert code.used_by == 555
    assert enrolled.code not in code.code_hash  # only the hash is stored


async def test_expired_and_wrong_codes_link_nothing(db: Database, protocol: Protocol,
                                                    clock: SimulatedClock) -> None:
    await add_site(db, clock.now())
    enrolled = await enrol(db, protocol, clock.now())
    assert await _try(db, protocol, 555, "WRONGCODE", clock) is LinkOutcome.REFUSED
    clock.advance(timedelta(hours=protocol.reminders.link_code_ttl_hours, seconds=1))
    assert await _try(db, protocol, 555, enrolled.code, clock) is LinkOutcome.REFUSED
    assert await _telegram_id(db, enrolled.patient_id) is None


async def test_the_eleventh_wrong_code_is_refused_without_checking(
        db: Database, protocol: Protocol, clock: SimulatedClock) -> None:
    await add_site(db, clock.now())
    enrolled = await enrol(db, protocol, clock.now())
    limit = protocol.reminders.link_code_attempts_per_hour
    for n in range(limit):
        assert await _try(db, protocol, 555, f"BAD{n}", clock) is LinkOutcome.REFUSED
        clock.advance(timedelta(minutes=1))
    # Even the right code is not looked at now: the chat is out of tries for this hour.
    assert await _try(db, protocol, 555, enrolled.code, clock) is LinkOutcome.LIMITED
    assert await _telegram_id(db, enrolled.patient_id) is None
    async with db.read() as session:
        used = (await session.execute(select(LinkCode.used_at))).scalar_one()
        attempts = (await session.execute(select(func.count()).select_from(LinkAttempt))
                    ).scalar_one()
    assert used is None
    assert attempts == limit
    # Another chat is not affected, and an hour after the first wrong try the chat may retry.
    clock.advance(timedelta(minutes=51))
    assert await _try(db, protocol, 555, enrolled.code, clock) is LinkOutcome.LINKED


async def test_two_chats_racing_for_one_code_one_wins(db: Database, protocol: Protocol,
                                                      clock: SimulatedClock) -> None:
    await add_site(db, clock.now())
    enrolled = await enrol(db, protocol, clock.now())
    outcomes = await asyncio.gather(*(_try(db, protocol, 1000 + n, enrolled.code, clock)
                                      for n in range(6)))
    assert sorted(outcomes).count(LinkOutcome.LINKED) == 1
    winner = 1000 + outcomes.index(LinkOutcome.LINKED)
    assert await _telegram_id(db, enrolled.patient_id) == winner


async def test_a_chat_linked_to_one_subject_cannot_take_another(
        db: Database, protocol: Protocol, clock: SimulatedClock) -> None:
    await add_site(db, clock.now())
    first = await enrol(db, protocol, clock.now(), subject="S001")
    second = await enrol(db, protocol, clock.now(), subject="S002")
    assert await _try(db, protocol, 555, first.code, clock) is LinkOutcome.LINKED
    assert await _try(db, protocol, 555, second.code, clock) is LinkOutcome.ALREADY
    assert await _telegram_id(db, second.patient_id) is None

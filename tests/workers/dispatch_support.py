"""Test doubles and seed data for the dispatcher tests: an in-process fake Channel and rows."""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select

from messages.channel import OutgoingMessage, SendError, SendResult
from storage.db import Database
from storage.models import OutboundMessage, Patient, Site, Staff

SITE = "S01"
SITE_TZ = "Asia/Shanghai"
COORDINATOR_CHAT = 9_000_001


@dataclass
class Sent:
    """One message the fake provider accepted."""

    at: float  # time.monotonic()
    message: OutgoingMessage
    provider_id: str


@dataclass
class FakeChannel:
    """Implements messages.channel.Channel: records sends, raises queued errors for an address."""

    name: str = "telegram"
    delay: float = 0.0
    log_path: Path | None = None  # every accepted send appended here and fsync'd
    sent: list[Sent] = field(default_factory=list)
    attempts: list[tuple[float, str]] = field(default_factory=list)  # (time, address) of tries
    _errors: dict[str, list[SendError]] = field(default_factory=dict)
    _always: dict[str, SendError] = field(default_factory=dict)
    _ids: Any = field(default_factory=lambda: itertools.count(1))

    def fail_next(self, address: str, *errors: SendError) -> None:
        """The next sends to `address` raise these errors, in order."""
        self._errors.setdefault(address, []).extend(errors)

    def fail_always(self, address: str, error: SendError) -> None:
        """Every send to `address` raises `error`."""
        self._always[address] = error

    def to(self, address: str) -> list[Sent]:
        """Accepted sends to one address."""
        return [s for s in self.sent if s.message.address == address]

    async def send(self, message: OutgoingMessage) -> SendResult:
        self.attempts.append((time.monotonic(), message.address))
        if self.delay:
            await asyncio.sleep(self.delay)
        queued = self._errors.get(message.address)
        if queued:
            raise queued.pop(0)
        if message.address in self._always:
            raise self._always[message.address]
        provider_id = f"{self.name}-{next(self._ids)}"
        if self.log_path is not None:
            fd = os.open(self.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, f"{message.message_id}\n".encode())
                os.fsync(fd)
            finally:
                os.close(fd)
        self.sent.append(Sent(time.monotonic(), message, provider_id))
        return SendResult(provider_id=provider_id)


async def seed_site(db: Database, now: datetime, *, coordinator: bool = True) -> None:
    """Site S01 (Shanghai) with one coordinator on Telegram."""
    async with db.write() as session:
        session.add(Site(id=SITE, name="Site one", tz=SITE_TZ, phone=None, created_at=now))
        await session.flush()
        if coordinator:
            session.add(Staff(site_id=SITE, role="coordinator", name="Coordinator One",
                              telegram_id=COORDINATOR_CHAT, phone=None, language="en",
                              active=True, telegram_reachable=True, created_at=now))


async def add_patient(db: Database, now: datetime, subject: str, *, telegram_id: int | None,
                      phone: str | None = None, tz: str = SITE_TZ,
                      status: str = "active") -> int:
    """One enrolled patient; returns its id."""
    async with db.write() as session:
        patient = Patient(subject_id=subject, site_id=SITE, baseline=date(2026, 1, 5),
                          dose_time="08:00", tz=tz, language="en", phone=phone,
                          telegram_id=telegram_id, status=status, opted_out=False,
                          telegram_reachable=True, sms_reachable=True, created_at=now)
        session.add(patient)
        await session.flush()
        return patient.id


def row(key: str, *, address: str, now: datetime, due_at: datetime | None = None,
        channel: str = "telegram", lane: str = "routine", template_id: str = "dose.reminder",
        patient_id: int | None = None, staff_id: int | None = None, status: str = "queued",
        sent_at: datetime | None = None) -> dict[str, Any]:
    """Column values of one outbox row (for bulk inserts)."""
    return {"dedupe_key": key, "channel": channel, "address": address,
            "template_id": template_id, "template_version": "t1", "language": "en",
            "body": f"text of {key}", "choices": [], "image": None, "lane": lane,
            "due_at": due_at or now, "status": status, "attempts": 0, "created_at": now,
            "patient_id": patient_id, "staff_id": staff_id, "sent_at": sent_at}


async def insert_rows(db: Database, rows: list[dict[str, Any]]) -> list[int]:
    """Bulk-insert outbox rows; return their ids in key order."""
    async with db.write() as session:
        for start in range(0, len(rows), 1000):
            await session.execute(insert(OutboundMessage), rows[start:start + 1000])
    async with db.read() as session:
        keys = [r["dedupe_key"] for r in rows]
        result = await session.execute(select(OutboundMessage.dedupe_key, OutboundMessage.id))
        found: dict[str, int] = {r[0]: r[1] for r in result.all()}
    return [found[k] for k in keys]


async def message(db: Database, message_id: int) -> OutboundMessage:
    """Re-read one outbox row."""
    async with db.read() as session:
        found = await session.get(OutboundMessage, message_id)
        assert found is not None
        return found

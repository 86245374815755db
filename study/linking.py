"""Binding a chat to an enrolled subject with a one-time code: `/start CODE` on Telegram (the
chat's user id becomes the subject's), and on any contact-point channel (WeChat: the code as a
QR code's scene, or typed) the sender's address becomes the subject's contact point there.

Codes are stored hashed and single-use, expire, and each chat has a limited number of wrong
tries per hour; past the limit a code is refused without being looked at, so guessing is
useless. When two chats race for one code, the conditional UPDATE lets exactly one win.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import ColumnElement, func, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession

from storage import audit
from storage.audit import Actor
from storage.models import ContactPoint, LinkAttempt, LinkCode, Patient, Staff
from study import contacts
from study.enrolment import hash_code
from study.reachability import rearm_doses
from trial.protocol import Protocol

TELEGRAM = "telegram"


class LinkOutcome(StrEnum):
    LINKED = "linked"
    ALREADY = "already"  # this chat is this subject's already, or belongs to someone else
    REFUSED = "refused"  # wrong, expired or used: one neutral answer for all three
    LIMITED = "limited"  # too many wrong tries this hour: the code was not checked


@dataclass(frozen=True)
class LinkResult:
    outcome: LinkOutcome
    patient: Patient | None = None


@dataclass(frozen=True)
class _Chat:
    """Who is trying a code: a Telegram chat id, or an address on another channel."""

    channel: str
    address: str

    @property
    def telegram_id(self) -> int | None:
        return int(self.address) if self.channel == TELEGRAM else None

    @property
    def attempt_key(self) -> str:
        return f"{self.channel}:{self.address}"[:160]

    @property
    def actor(self) -> Actor:
        return Actor(self.channel, self.address)


def _attempts(chat: _Chat) -> ColumnElement[bool]:
    if chat.telegram_id is not None:
        return LinkAttempt.chat_id == chat.telegram_id
    return LinkAttempt.address == chat.attempt_key


async def wrong_tries(session: AsyncSession, chat_id: int | str, now: datetime, *,
                      channel: str = TELEGRAM) -> int:
    """Wrong codes from a chat (or an address on `channel`) in the past hour."""
    chat = _Chat(channel, str(chat_id))
    return int((await session.execute(
        select(func.count()).select_from(LinkAttempt).where(
            _attempts(chat), LinkAttempt.at > now - timedelta(hours=1)))
    ).scalar_one())


async def _refuse(session: AsyncSession, chat: _Chat, why: str, now: datetime) -> LinkResult:
    if chat.telegram_id is not None:
        session.add(LinkAttempt(chat_id=chat.telegram_id, at=now))
    else:
        session.add(LinkAttempt(address=chat.attempt_key, at=now))
    audit.record(session, at=now, actor=chat.actor, action="link_refused",
                 entity="link_codes", entity_id="-", reason=why)
    return LinkResult(LinkOutcome.REFUSED)


async def link_chat(session: AsyncSession, protocol: Protocol, *, chat_id: int, code: str,
                    now: datetime) -> LinkResult:
    """Try a link code from a Telegram chat; on success the chat's user id becomes the
    subject's."""
    return await _link(session, protocol, _Chat(TELEGRAM, str(chat_id)), code, now)


async def link_address(session: AsyncSession, protocol: Protocol, *, channel: str,
                       address: str, code: str, now: datetime) -> LinkResult:
    """Try a link code from an address on a contact-point channel (a WeChat openid); on
    success the address becomes the subject's contact point on that channel."""
    return await _link(session, protocol, _Chat(channel, address), code, now)


async def _holder(session: AsyncSession, chat: _Chat) -> Patient | None:
    if chat.telegram_id is not None:
        return (await session.execute(select(Patient).where(
            Patient.telegram_id == chat.telegram_id))).scalar_one_or_none()
    point = await contacts.find(session, chat.channel, chat.address)
    if point is None or point.owner_kind != contacts.PATIENT:
        return None
    return await session.get(Patient, point.owner_id)


async def _staff_owned(session: AsyncSession, chat: _Chat) -> bool:
    if chat.telegram_id is not None:
        return (await session.execute(select(Staff.id).where(
            Staff.telegram_id == chat.telegram_id))).first() is not None
    return (await session.execute(select(ContactPoint.id).where(
        ContactPoint.channel == chat.channel, ContactPoint.address == chat.address,
        ContactPoint.owner_kind == contacts.STAFF))).first() is not None


async def _link(session: AsyncSession, protocol: Protocol, chat: _Chat, code: str,
                now: datetime) -> LinkResult:
    limit = protocol.reminders.link_code_attempts_per_hour
    if await wrong_tries(session, chat.address, now, channel=chat.channel) >= limit:
        audit.record(session, at=now, actor=chat.actor, action="link_limited",
                     entity="link_codes", entity_id="-", reason="too many wrong codes")
        return LinkResult(LinkOutcome.LIMITED)
    code = code.strip()
    if not code:
        return await _refuse(session, chat, "empty code", now)
    link = (await session.execute(select(LinkCode).where(
        LinkCode.code_hash == hash_code(code)))).scalar_one_or_none()
    if link is None:
        return await _refuse(session, chat, "unknown code", now)
    if link.used_at is not None:
        return await _refuse(session, chat, f"code {link.id} already used", now)
    if link.expires_at <= now:
        return await _refuse(session, chat, f"code {link.id} expired", now)
    patient = await session.get(Patient, link.patient_id)
    if patient is None or patient.status == "withdrawn":
        return await _refuse(session, chat, f"code {link.id}: subject not active", now)
    holder = await _holder(session, chat)
    if holder is not None and holder.id != patient.id:
        # One chat, one subject: never silently move a chat to another subject's record.
        audit.record(session, at=now, actor=chat.actor, action="link_refused",
                     entity="patients", entity_id=holder.subject_id,
                     reason="chat already linked to another subject")
        return LinkResult(LinkOutcome.ALREADY, holder)
    if await _staff_owned(session, chat):
        return await _refuse(session, chat, "chat belongs to a staff member", now)
    claimed: CursorResult[tuple[()]] = await session.execute(  # type: ignore[assignment]
        update(LinkCode).where(LinkCode.id == link.id, LinkCode.used_at.is_(None))
        .values(used_at=now, used_by=chat.telegram_id)
        .execution_options(synchronize_session=False))
    if claimed.rowcount != 1:
        # Another chat took this code a moment ago.
        return await _refuse(session, chat, f"code {link.id} taken concurrently", now)
    audit.record(session, at=now, actor=chat.actor, action="link_code_used",
                 entity="link_codes", entity_id=str(link.id), new=chat.address)
    actor = Actor.patient(patient.subject_id)
    if chat.telegram_id is not None:
        audit.change(session, patient, at=now, actor=actor, reason="linked by one-time code",
                     telegram_id=chat.telegram_id, telegram_reachable=True)
    else:
        await contacts.bind(session, patient, channel=chat.channel, address=chat.address,
                            now=now, actor=actor, reason="linked by one-time code")
    # Today's dose may have waited for a channel: its reminder goes at the next tick.
    await rearm_doses(session, patient.id, now=now)
    return LinkResult(LinkOutcome.LINKED, patient)

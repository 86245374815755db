"""Binding a Telegram chat to an enrolled subject with a one-time code (`/start CODE`).

Codes are stored hashed and single-use, expire, and each chat has a limited number of wrong
tries per hour; past the limit a code is refused without being looked at, so guessing is
useless. When two chats race for one code, the conditional UPDATE lets exactly one win.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import func, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession

from storage import audit
from storage.audit import Actor
from storage.models import LinkAttempt, LinkCode, Patient, Staff
from study.enrolment import hash_code
from study.reachability import rearm_doses
from trial.protocol import Protocol


class LinkOutcome(StrEnum):
    LINKED = "linked"
    ALREADY = "already"  # this chat is this subject's already, or belongs to someone else
    REFUSED = "refused"  # wrong, expired or used: one neutral answer for all three
    LIMITED = "limited"  # too many wrong tries this hour: the code was not checked


@dataclass(frozen=True)
class LinkResult:
    outcome: LinkOutcome
    patient: Patient | None = None


def _chat_actor(chat_id: int) -> Actor:
    return Actor("telegram", str(chat_id))


async def wrong_tries(session: AsyncSession, chat_id: int, now: datetime) -> int:
    """Wrong codes from a chat in the past hour."""
    return int((await session.execute(
        select(func.count()).select_from(LinkAttempt).where(
            LinkAttempt.chat_id == chat_id, LinkAttempt.at > now - timedelta(hours=1)))
    ).scalar_one())


async def _refuse(session: AsyncSession, chat_id: int, why: str, now: datetime) -> LinkResult:
    session.add(LinkAttempt(chat_id=chat_id, at=now))
    audit.record(session, at=now, actor=_chat_actor(chat_id), action="link_refused",
                 entity="link_codes", entity_id="-", reason=why)
    return LinkResult(LinkOutcome.REFUSED)


async def link_chat(session: AsyncSession, protocol: Protocol, *, chat_id: int, code: str,
                    now: datetime) -> LinkResult:
    """Try a link code from a chat; on success the chat's user id becomes the subject's."""
    if await wrong_tries(session, chat_id, now) >= protocol.reminders.link_code_attempts_per_hour:
        audit.record(session, at=now, actor=_chat_actor(chat_id), action="link_limited",
                     entity="link_codes", entity_id="-", reason="too many wrong codes")
        return LinkResult(LinkOutcome.LIMITED)
    code = code.strip()
    if not code:
        return await _refuse(session, chat_id, "empty code", now)
    link = (await session.execute(select(LinkCode).where(
        LinkCode.code_hash == hash_code(code)))).scalar_one_or_none()
    if link is None:
        return await _refuse(session, chat_id, "unknown code", now)
    if link.used_at is not None:
        return await _refuse(session, chat_id, f"code {link.id} already used", now)
    if link.expires_at <= now:
        return await _refuse(session, chat_id, f"code {link.id} expired", now)
    patient = await session.get(Patient, link.patient_id)
    if patient is None or patient.status == "withdrawn":
        return await _refuse(session, chat_id, f"code {link.id}: subject not active", now)
    holder = (await session.execute(select(Patient).where(
        Patient.telegram_id == chat_id))).scalar_one_or_none()
    if holder is not None and holder.id != patient.id:
        # One chat, one subject: never silently move a chat to another subject's record.
        audit.record(session, at=now, actor=_chat_actor(chat_id), action="link_refused",
                     entity="patients", entity_id=holder.subject_id,
                     reason="chat already linked to another subject")
        return LinkResult(LinkOutcome.ALREADY, holder)
    if (await session.execute(select(Staff.id).where(Staff.telegram_id == chat_id))).first():
        return await _refuse(session, chat_id, "chat belongs to a staff member", now)
    claimed: CursorResult[tuple[()]] = await session.execute(  # type: ignore[assignment]
        update(LinkCode).where(LinkCode.id == link.id, LinkCode.used_at.is_(None))
        .values(used_at=now, used_by=chat_id).execution_options(synchronize_session=False))
    if claimed.rowcount != 1:
        # Another chat took this code a moment ago.
        return await _refuse(session, chat_id, f"code {link.id} taken concurrently", now)
    audit.record(session, at=now, actor=_chat_actor(chat_id), action="link_code_used",
                 entity="link_codes", entity_id=str(link.id), new=str(chat_id))
    audit.change(session, patient, at=now, actor=Actor.patient(patient.subject_id),
                 reason="linked by one-time code", telegram_id=chat_id,
                 telegram_reachable=True)
    # Today's dose may have waited for a channel: its reminder goes at the next tick.
    await rearm_doses(session, patient.id, now=now)
    return LinkResult(LinkOutcome.LINKED, patient)

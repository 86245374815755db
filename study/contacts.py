"""Addresses on channels without a column of their own (`storage.models.ContactPoint`: a WeChat
openid, a WeCom userid): who owns an address, binding one to a patient or staff member, and
noting that the owner just wrote (WeChat's 48-hour window for free-form replies)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from storage import audit
from storage.audit import Actor
from storage.models import ContactPoint, Patient, Staff

PATIENT = "patient"
STAFF = "staff"


async def find(session: AsyncSession, channel: str, address: str) -> ContactPoint | None:
    """The contact point of an address on a channel, if anyone owns it."""
    return (await session.execute(select(ContactPoint).where(
        ContactPoint.channel == channel, ContactPoint.address == address))).scalar_one_or_none()


async def owner(session: AsyncSession, point: ContactPoint) -> Patient | Staff | None:
    """The patient or staff member a contact point belongs to."""
    model = Patient if point.owner_kind == PATIENT else Staff
    return await session.get(model, point.owner_id)


async def bind(session: AsyncSession, person: Patient | Staff, *, channel: str, address: str,
               now: datetime, actor: Actor, reason: str) -> ContactPoint:
    """Give `person` this address on `channel` (their previous one there, if any, replaced),
    reachable; audited. The caller has checked that nobody else owns the address."""
    kind = PATIENT if isinstance(person, Patient) else STAFF
    point = (await session.execute(select(ContactPoint).where(
        ContactPoint.owner_kind == kind, ContactPoint.owner_id == person.id,
        ContactPoint.channel == channel))).scalar_one_or_none()
    if point is None:
        point = ContactPoint(owner_kind=kind, owner_id=person.id, channel=channel,
                             address=address, reachable=True, last_inbound_at=now,
                             created_at=now)
        await audit.create(session, point, at=now, actor=actor, reason=reason)
    else:
        audit.change(session, point, at=now, actor=actor, reason=reason, address=address,
                     reachable=True)
        point.last_inbound_at = now
    # The owner's (view-only) list is as loaded: make routing in this transaction see it.
    loaded = list(vars(person).get("contact_points") or ())
    if point not in loaded:
        set_committed_value(person, "contact_points", [*loaded, point])
    return point


def wrote(point: ContactPoint, now: datetime) -> None:
    """The owner just wrote on this channel (not study data: not audited)."""
    if point.last_inbound_at is None or point.last_inbound_at < now:
        point.last_inbound_at = now


async def attach(session: AsyncSession, people: Iterable[Any]) -> None:
    """Give rows read with a Core statement (`storage.batch.Loaded` patients: no ORM loading)
    their `contact_points`, in one statement, so `study.recipients` routes them as it routes
    ORM rows."""
    people = [p for p in people if "contact_points" not in vars(p)]
    if not people:
        return
    points = (await session.execute(select(ContactPoint).where(
        ContactPoint.owner_kind == PATIENT,
        ContactPoint.owner_id.in_({p.id for p in people})).order_by(ContactPoint.id)
    )).scalars().all()
    for person in people:
        person.contact_points = [p for p in points if p.owner_id == person.id]

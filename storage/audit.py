"""The one path by which study data changes: every change writes its audit row in the same
transaction, with who, what, why and when (UTC)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from enum import Enum
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import AuditEntry, Base


@dataclass(frozen=True)
class Actor:
    """Who made a change: a staff member, a patient, the system itself, or a CLI operator."""

    kind: str
    id: str

    @classmethod
    def system(cls, component: str = "engage") -> Actor:
        return cls("system", component)

    @classmethod
    def staff(cls, staff_id: int) -> Actor:
        return cls("staff", str(staff_id))

    @classmethod
    def patient(cls, subject_id: str) -> Actor:
        return cls("patient", subject_id)

    @classmethod
    def cli(cls, user: str) -> Actor:
        return cls("cli", user)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def _entity_id(row: Base) -> str:
    identity = getattr(row, "subject_id", None) or getattr(row, "id", None)
    return str(identity)


def record(session: AsyncSession, *, at: datetime, actor: Actor, action: str, entity: str,
           entity_id: str, field: str | None = None, old: Any = None, new: Any = None,
           reason: str | None = None) -> AuditEntry:
    """Append one audit row to the current transaction."""
    entry = AuditEntry(at=at, actor_kind=actor.kind, actor_id=actor.id, action=action,
                       entity=entity, entity_id=entity_id, field=field, old_value=_text(old),
                       new_value=_text(new), reason=reason)
    session.add(entry)
    return entry


async def create(session: AsyncSession, row: Base, *, at: datetime, actor: Actor,
                 reason: str | None = None) -> None:
    """Insert a row and audit its creation with every initial field value."""
    session.add(row)
    await session.flush()
    values = {c.key: getattr(row, c.key) for c in row.__table__.columns}
    new = ", ".join(f"{k}={_text(v)}" for k, v in values.items() if v is not None)
    record(session, at=at, actor=actor, action="create", entity=row.__tablename__,
           entity_id=_entity_id(row), new=new, reason=reason)


def change(session: AsyncSession, row: Base, *, at: datetime, actor: Actor,
           reason: str | None = None, **fields: Any) -> bool:
    """Set fields on a row, auditing each value that really changes; True if any did."""
    changed = False
    for field, new in fields.items():
        old = getattr(row, field)
        if old == new:
            continue
        setattr(row, field, new)
        record(session, at=at, actor=actor, action="update", entity=row.__tablename__,
               entity_id=_entity_id(row), field=field, old=old, new=new, reason=reason)
        changed = True
    return changed

"""The one path by which study data changes: every change writes its audit row in the same
transaction, with who, what, why and when (UTC)."""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from enum import Enum
from typing import Any, cast

from sqlalchemy import Table, event, insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

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


# What caused the changes being made now: the inbound message being handled (its id goes on
# every audit row it causes) and a default reason for rows written without one (the message,
# the scheduled step, the delivery callback). Set by `cause`, per task.
_CAUSE: contextvars.ContextVar[tuple[int | None, str | None]] = contextvars.ContextVar(
    "audit_cause", default=(None, None))


@contextmanager
def cause(*, reason: str, inbound_id: int | None = None) -> Iterator[None]:
    """Every audit row written inside names this inbound message (if any) and, when it has no
    reason of its own, this reason."""
    outer_inbound, _ = _CAUSE.get()
    token = _CAUSE.set((inbound_id if inbound_id is not None else outer_inbound, reason))
    try:
        yield
    finally:
        _CAUSE.reset(token)


def current_cause() -> tuple[int | None, str | None]:
    """(inbound message id, default reason) of the changes being made now."""
    return _CAUSE.get()


def _text(value: Any) -> str | None:
    if value is None or type(value) is str:
        return value
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def _entity_id(row: Base) -> str:
    identity = getattr(row, "subject_id", None) or getattr(row, "id", None)
    return str(identity)


@dataclass(frozen=True)
class Entry:
    """One audit row to write, with the arguments of `record`."""

    at: datetime
    actor: Actor
    action: str
    entity: str
    entity_id: str
    field: str | None = None
    old: Any = None
    new: Any = None
    reason: str | None = None

    def values(self) -> dict[str, Any]:
        """The row's column values, formatted as `record` formats them, with the current
        cause (the inbound message's id; its reason when the entry has none)."""
        inbound_id, reason = _CAUSE.get()
        return {"at": self.at, "actor_kind": self.actor.kind, "actor_id": self.actor.id,
                "action": self.action, "entity": self.entity, "entity_id": self.entity_id,
                "field": self.field, "old_value": _text(self.old), "new_value": _text(self.new),
                "reason": self.reason or reason, "inbound_id": inbound_id}


def record(session: AsyncSession, *, at: datetime, actor: Actor, action: str, entity: str,
           entity_id: str, field: str | None = None, old: Any = None, new: Any = None,
           reason: str | None = None) -> AuditEntry:
    """Append one audit row to the current transaction."""
    entry = AuditEntry(**Entry(at, actor, action, entity, entity_id, field, old, new,
                               reason).values())
    session.add(entry)
    return entry


# --- deferred entries: many changes in a loop, one INSERT -------------------------------------
# Entries are kept in the session and inserted with one statement at its next flush or commit,
# in the same transaction as the changes they record (a rollback drops both). For hot loops
# (a day's dose planning) where one ORM insert per entry would be most of the cost.

_DEFERRED = "audit_deferred_entries"
_LISTENING = "audit_deferred_listening"


def record_later(session: AsyncSession, entry: Entry) -> None:
    """Append an audit row at the session's next flush or commit (same transaction)."""
    info = session.info
    pending = info.get(_DEFERRED)
    if pending is None:
        pending = info[_DEFERRED] = []
        if _LISTENING not in info:  # once per session (the list itself goes at each flush)
            info[_LISTENING] = True
            sync = session.sync_session
            event.listen(sync, "before_flush", _write_deferred_on_flush)
            event.listen(sync, "before_commit", _write_deferred)
            event.listen(sync, "after_rollback", _drop_deferred)
    pending.append(entry.values())


async def write_deferred(session: AsyncSession) -> None:
    """Write the deferred entries now (they are written at the next flush or commit anyway)."""
    await session.run_sync(_write_deferred)


def _write_deferred(session: Session) -> None:
    rows = session.info.pop(_DEFERRED, None)
    if not rows:
        return
    connection = session.connection()
    dialect = connection.dialect
    if dialect.name != "sqlite":
        session.execute(insert(_TABLE), rows)
        return
    # SQLite: the same INSERT with the values as the statement would bind them (the time as
    # its column type writes it; every other column is text or an integer, bound as it is),
    # without the per-row parameter processing (a day's dose planning writes thousands).
    at = _TABLE.c.at.type.dialect_impl(dialect).bind_processor(dialect)
    assert at is not None
    connection.exec_driver_sql(_SQLITE_INSERT, [
        (at(row["at"]), *(row[name] for name in _COLUMNS[1:])) for row in rows])


_TABLE = cast(Table, AuditEntry.__table__)
# Every column `Entry.values` gives, `at` first.
_COLUMNS = ("at", "actor_kind", "actor_id", "action", "entity", "entity_id", "field",
            "old_value", "new_value", "reason", "inbound_id")
_SQLITE_INSERT = (f"INSERT INTO {_TABLE.name} ({', '.join(_COLUMNS)}) "
                  f"VALUES ({', '.join('?' for _ in _COLUMNS)})")


def _write_deferred_on_flush(session: Session, _context: Any, _instances: Any) -> None:
    _write_deferred(session)


def _drop_deferred(session: Session, *_: Any) -> None:
    session.info.pop(_DEFERRED, None)


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

"""A daily dose's row and the pure dose (`trial.dose.Dose`) it holds: reading one from the
other, and writing a dose's new state back, every changed field audited (`store` for one row the
session holds, `DoseWrites` for a planning batch's Core-read rows).

Dose changes are audited as `storage.audit.record` would, but deferred: a day's planning writes
all its entries with one statement at the session's flush or commit. Whatever is read of the
doses for a session (`DOSE_DAYS`, adherence) is forgotten when a dose changes.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import date, datetime
from typing import Any, cast

from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import flag_modified

from storage import audit
from storage.audit import Actor
from storage.batch import RowWrites, value_of
from storage.models import DoseRecord
from storage.session_cache import SessionCache
from trial.dose import Dose, DoseState

PLANNER = Actor.system("planner")
DOSE_FIELDS = tuple(f.name for f in fields(Dose))
DOSE_TABLE = cast(Table, DoseRecord.__table__)


@dataclass(frozen=True)
class DoseDay:
    """What adherence reads of one dose."""

    state: str
    late_answer: str | None


# A site's dose days over a window, per patient, as adherence reads them (`study.adherence`):
# kept for the session, forgotten whenever a dose changes or the session flushes, commits or
# rolls back.
DOSE_DAYS: SessionCache[tuple[str, date, date], dict[int, dict[date, DoseDay]]] = (
    SessionCache("dose_adherence_days"))


def to_dose(row: DoseRecord) -> Dose:
    """The pure dose of a row."""
    values: dict[str, Any] = {name: value_of(row, name) for name in DOSE_FIELDS}
    values["state"] = DoseState(values["state"])
    return Dose(**values)


def _changes(row: DoseRecord, dose: Dose, extra: dict[str, Any]) -> dict[str, Any]:
    """The row's columns whose value the new dose (and `extra`) changes, with the new values;
    `next_action_at` among them when it moves."""
    changes: dict[str, Any] = {}
    for name in DOSE_FIELDS:
        new = getattr(dose, name)
        if name == "state":
            new = new.value
        if value_of(row, name) != new:
            changes[name] = new
    for name, new in extra.items():
        if value_of(row, name) != new:
            changes[name] = new
    following = dose.next_action_at()
    if value_of(row, "next_action_at") != following:
        changes["next_action_at"] = following
    return changes


def _audit_changes(session: AsyncSession, row: DoseRecord, changes: dict[str, Any], *,
                   now: datetime, actor: Actor, reason: str | None) -> bool:
    """Audit every changed field (`next_action_at` is bookkeeping: not audited); True if any."""
    audited = False
    for name, new in changes.items():
        if name != "next_action_at":
            audit_later(session, at=now, actor=actor, action="update", entity_id=str(row.id),
                        field=name, old=value_of(row, name), new=new, reason=reason)
            audited = True
    return audited


def store(session: AsyncSession, row: DoseRecord, dose: Dose, *, now: datetime, actor: Actor,
          reason: str | None = None, **extra: Any) -> bool:
    """Write a dose's new state to its row (at the next flush), auditing every changed field;
    True if an audited field changed."""
    changes = _changes(row, dose, extra)
    if not changes:
        return False
    DOSE_DAYS.forget(session)
    audited = _audit_changes(session, row, changes, now=now, actor=actor, reason=reason)
    for name, new in changes.items():
        setattr(row, name, new)
    # The same column list for every answered dose, so a session's answers are written with one
    # executemany (the ORM starts a new statement whenever the columns differ from the last).
    for name in _ANSWER_COLUMNS:
        flag_modified(row, name)
    return audited


# Every column an answer (or the cut-off closing before it) may change.
_ANSWER_COLUMNS = ("state", "answered_at", "closed_at", "snoozes", "snoozed_until",
                   "skip_reason", "late_answer", "late_answer_at", "next_action_at")


class DoseWrites(RowWrites):
    """The dose rows one planning batch changes: audited as `store` audits, written with one
    UPDATE statement per set of changed columns (a batch's doses mostly change alike: all
    reminded, or all closed). The rows are `storage.batch.Loaded` rows (Core reads)."""

    def __init__(self, session: AsyncSession) -> None:
        super().__init__(session, DOSE_TABLE)

    def store(self, row: DoseRecord, dose: Dose, *, now: datetime, actor: Actor,
              reason: str | None = None, **extra: Any) -> bool:
        """`store` for the batch; True if an audited field changed."""
        changes = _changes(row, dose, extra)
        audited = _audit_changes(self.session, row, changes, now=now, actor=actor,
                                 reason=reason)
        self.put(row, changes)
        return audited

    def wait(self, row: DoseRecord, until: datetime | None) -> None:
        """Look at the dose again at `until` (bookkeeping: not audited)."""
        if value_of(row, "next_action_at") != until:
            self.put(row, {"next_action_at": until})

    async def write(self) -> int:
        """Write every changed row (one statement per set of changed columns); how many rows."""
        if self.rows:
            DOSE_DAYS.forget(self.session)
        return await super().write()


def audit_later(session: AsyncSession, *, at: datetime, actor: Actor, action: str,
                entity_id: str, field: str | None = None, old: Any = None, new: Any = None,
                reason: str | None = None) -> None:
    """A dose's audit entry, written with the session's other deferred entries."""
    audit.record_later(session, audit.Entry(at, actor, action, DoseRecord.__tablename__,
                                            entity_id, field, old, new, reason))


async def flush_audit(session: AsyncSession) -> None:
    """Write the dose audit entries this session holds now (they are written at commit anyway)."""
    await audit.write_deferred(session)

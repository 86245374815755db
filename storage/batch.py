"""Rows read and written in batches with Core statements, for the per-instant paths (the dose
planner reads hundreds of rows a pass: ORM objects, their identity map and change tracking cost
several times the query).

`Loaded` is one row's columns as read (a plain object with the mapped class's attribute names);
`RowWrites` collects the changes to such rows and writes them with one UPDATE statement per set
of changed columns (`update_by_id`, built once per set).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

from sqlalchemy import Table, bindparam, update
from sqlalchemy.ext.asyncio import AsyncSession

__all__ = ["Loaded", "RowWrites", "loaded_rows", "update_by_id", "value_of"]


class Loaded:
    """One row's columns as read with a Core statement: a plain object with the mapped class's
    attribute names (the per-instant planning reads hundreds of rows; ORM objects, their
    identity map and change tracking cost several times the query)."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.__dict__.update(values)


def loaded_rows(rows: Sequence[Any], *parts: Sequence[str]) -> list[tuple[Any, ...]]:
    """Split each result row into one `Loaded` per part (its column names, in order)."""
    spans, start = [], 0
    for names in parts:
        spans.append((start, start + len(names), names))
        start += len(names)
    return [tuple(Loaded(dict(zip(names, row[low:high], strict=True)))
                  for low, high, names in spans) for row in rows]


def value_of(row: Any, name: str) -> Any:
    """A column's value as loaded (a plain read: this runs for every field of every change),
    of a `Loaded` row or an ORM object."""
    loaded = row.__dict__
    return loaded[name] if name in loaded else getattr(row, name)


@cache
def update_by_id(table: Table, names: tuple[str, ...]) -> Any:
    """UPDATE of these columns by id (executemany parameters `b_id`, `b_<name>`), built once
    per set of columns: a new statement object would be compiled-cache-keyed every time."""
    return (update(table).where(table.c.id == bindparam("b_id"))
            .values({name: bindparam(f"b_{name}") for name in names}))


class RowWrites:
    """The rows of one table a batch changes, written with one UPDATE statement per set of
    changed columns (a batch's rows mostly change alike), not one by one as the ORM would. The
    rows are `Loaded` rows (Core reads), not ORM objects: the session tracks nothing of them."""

    def __init__(self, session: AsyncSession, table: Table) -> None:
        self.session = session
        self.table = table
        self.rows: dict[int, tuple[Any, set[str]]] = {}

    def put(self, row: Any, changes: dict[str, Any]) -> None:
        """Give the row its new values now; they are written by `write`."""
        if not changes:
            return
        row.__dict__.update(changes)
        _, columns = self.rows.setdefault(row.id, (row, set()))
        columns.update(changes)

    async def write(self) -> int:
        """Write every changed row (one statement per set of changed columns); how many rows."""
        if not self.rows:
            return 0
        groups: dict[tuple[str, ...], list[Any]] = {}
        for row, changed in self.rows.values():
            groups.setdefault(tuple(sorted(changed)), []).append(row)
        for names, rows in groups.items():
            await self.session.execute(
                update_by_id(self.table, names),
                [{"b_id": row.id, **{f"b_{name}": value_of(row, name) for name in names}}
                 for row in rows])
        return len(self.rows)

"""`engage export KIND --out FILE.csv`: data for the trial's data management (UTF-8 with BOM).

Each kind is one entry of EXPORTS: its columns and an async generator of rows (given a read
session), e.g. `EXPORTS["doses"] = Export(DOSE_COLUMNS, dose_rows, "doses")`. Adding an export
(doses, symptoms, alerts, messages) is one row function and one line here.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import os
import re
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from engage.commands.support import CommandError, cli_actor, emit, now, open_database
from engage.config import Settings
from storage import audit
from storage.models import AuditEntry
from study import exports

Row = Sequence[Any]


@dataclass(frozen=True)
class Export:
    """One kind of export: its header and its rows, oldest first."""

    columns: tuple[str, ...]
    rows: Callable[[AsyncSession], AsyncIterator[Row]]
    entity: str = ""  # the table it reads (default: the kind), for the export's audit row


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def cell(value: Any) -> str:
    """A CSV cell: times in UTC ISO 8601 (Z), empty for None."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    text = str(value)
    # Free text (a patient's own words) must not run as a spreadsheet formula when opened.
    if text[:1] in FORMULA_STARTS:
        return "'" + text
    return text


# Contact details stay in the database: the audit export says that one changed, not to what.
CONTACT_FIELDS = ("phone", "telegram_id", "sender", "address", "chat_id")
REDACTED = "[contact detail]"
PEOPLE_AND_PROGRAMS = ("patient", "staff", "system", "cli")
_CONTACT_VALUE = re.compile(rf"\b({'|'.join(CONTACT_FIELDS)})=[^,]*")


def _redacted(field: str | None, value: str | None) -> str | None:
    """An audit value without contact details: a contact field's value, or the `phone=...`
    parts of a created row's values."""
    if value is None:
        return None
    if field in CONTACT_FIELDS:
        return REDACTED
    return _CONTACT_VALUE.sub(rf"\1={REDACTED}", value)


async def audit_rows(session: AsyncSession) -> AsyncIterator[Row]:
    """Every audit entry in the order written, contact details redacted."""
    result = await session.stream_scalars(
        select(AuditEntry).order_by(AuditEntry.id).execution_options(yield_per=1000))
    async for e in result:
        # An actor known only by its chat (a link code used from Telegram) is a contact detail.
        by_chat = e.actor_kind not in PEOPLE_AND_PROGRAMS
        actor_id = REDACTED if by_chat else e.actor_id
        old, new = (_redacted(e.field, value) for value in (e.old_value, e.new_value))
        if by_chat and e.actor_id:
            old, new = (v.replace(e.actor_id, REDACTED) if v else v for v in (old, new))
        yield (e.id, e.at, e.actor_kind, actor_id, e.action, e.entity, e.entity_id, e.field,
               old, new, e.reason)


EXPORTS: dict[str, Export] = {
    "audit": Export(("id", "at_utc", "actor_kind", "actor_id", "action", "entity", "entity_id",
                     "field", "old_value", "new_value", "reason"), audit_rows, "audit_log"),
    "doses": Export(exports.DOSE_COLUMNS, exports.dose_rows, "doses"),
    "symptoms": Export(exports.SYMPTOM_COLUMNS, exports.symptom_rows, "symptom_reports"),
    "alerts": Export(exports.ALERT_COLUMNS, exports.alert_rows, "alerts"),
    "messages": Export(exports.MESSAGE_COLUMNS, exports.message_rows, "outbound_messages"),
}


def register(sub: argparse._SubParsersAction) -> None:
    export = sub.add_parser("export", help="CSV exports for data management (UTF-8 with BOM)")
    export.add_argument("kind", choices=sorted(EXPORTS), help="what to export")
    export.add_argument("--out", required=True, type=Path, metavar="FILE.csv")
    export.add_argument("--json", action="store_true", help="print the summary as JSON")
    export.set_defaults(handler=_export)


def _open_private(path: Path) -> tuple[Any, Path]:
    """A new temporary file beside `path`, readable by its owner only (mode 0600, as mkstemp
    makes it): a half-written export of patient data is never readable by others."""
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    # utf-8-sig writes the BOM once, at the start: Excel then reads Chinese text correctly.
    return os.fdopen(fd, "w", encoding="utf-8-sig", newline=""), Path(name)


def _discard(out: Any, partial: Path) -> None:
    out.close()
    partial.unlink(missing_ok=True)


def _finish(out: Any, partial: Path, path: Path) -> None:
    out.flush()
    os.fsync(out.fileno())
    out.close()
    os.replace(partial, path)


async def write_export(session: AsyncSession, kind: str, path: Path,
                       progress: Callable[[int], None] | None = None) -> int:
    """Write one export to `path`; return the number of rows. The rows go to a private
    temporary file in the same directory (mode 0600), renamed over `path` only when complete
    and removed on any failure: `path` is never partial, no partial file is left behind."""
    export = EXPORTS[kind]
    out, partial = await asyncio.to_thread(_open_private, path)
    try:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(export.columns)
        count = 0
        async for row in export.rows(session):
            writer.writerow([cell(v) for v in row])
            count += 1
            if progress is not None and count % 500 == 0:
                progress(count)
            if buffer.tell() > 1 << 16:
                await asyncio.to_thread(out.write, buffer.getvalue())
                buffer.seek(0)
                buffer.truncate()
        await asyncio.to_thread(out.write, buffer.getvalue())
        await asyncio.to_thread(_finish, out, partial, path)
    except BaseException:
        await asyncio.shield(asyncio.to_thread(_discard, out, partial))
        raise
    return count


@contextmanager
def _progress_bar(kind: str) -> Iterator[Callable[[int], None] | None]:
    """Rows written so far, on stderr, only for a person watching a terminal."""
    if not sys.stderr.isatty():
        yield None
        return
    console = Console(stderr=True)
    with Progress(SpinnerColumn(), TextColumn("exporting {task.description}"),
                  TextColumn("{task.completed} rows"), TimeElapsedColumn(),
                  console=console, transient=True) as bar:
        task = bar.add_task(kind, total=None)
        yield lambda done: bar.update(task, completed=done)


async def _export(args: argparse.Namespace, settings: Settings) -> int:
    path: Path = args.out
    if not path.parent.is_dir():
        raise CommandError(f"{path.parent}: no such directory")
    async with open_database(settings) as database:
        try:
            async with database.read() as session:
                with _progress_bar(args.kind) as progress:
                    count = await write_export(session, args.kind, path, progress)
        except OSError as exc:
            raise CommandError(f"{path}: cannot write: {exc.strerror}") from None
        # Taking data out of the system is itself on the record.
        async with database.write() as session:
            audit.record(session, at=now(), actor=cli_actor(), action="export",
                         entity=EXPORTS[args.kind].entity or args.kind, entity_id=args.kind,
                         new=f"{count} rows to {path.name}")
    emit({"kind": args.kind, "rows": count, "out": str(path)}, args.json,
         f"wrote {count} {args.kind} rows to {path}")
    return 0

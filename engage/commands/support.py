"""What every admin command shares: the database made ready, the operator as actor, the time,
and refused changes turned into one error line."""

from __future__ import annotations

import getpass
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime
from typing import Any

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError as AlembicError
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from engage.clock import SystemClock
from engage.config import Settings
from storage.audit import Actor
from storage.db import Database
from storage.migrate import alembic_config, upgrade
from study.changes import Changes
from study.oncall import OnCallError
from study.visits import VisitError
from trial.enrolment import EnrolmentError


class CommandError(Exception):
    """A user error: printed as one line on stderr, exit status 2 (or `status`)."""

    def __init__(self, message: str, status: int = 2) -> None:
        super().__init__(message)
        self.status = status


def emit(data: Any, as_json: bool, text: str | None = None) -> None:
    """Print a result as JSON (`--json`) or as readable text."""
    if as_json:
        print(json.dumps(data, ensure_ascii=False, indent=2, default=str))
    else:
        print(text if text is not None else data)


def describe_changes(changes: Changes) -> str:
    """A change as a coordinator reads it: one line per field, then what followed."""
    if not changes.fields:
        return f"{changes.entity_id}: nothing changed (the values were already so)"
    lines = [f"{changes.entity_id}: {name} {old} -> {new}" for name, old, new in changes.fields]
    return "\n".join([*lines, *(f"  {note}" for note in changes.notes)])


def table(rows: list[dict[str, Any]], columns: list[str], empty: str = "nothing") -> str:
    """Rows as an aligned text table of the given columns (`-` for nothing)."""
    if not rows:
        return empty
    cells = [[_cell(row.get(column)) for column in columns] for row in rows]
    widths = [max(len(column), *(len(line[i]) for line in cells))
              for i, column in enumerate(columns)]
    lines = [columns, *cells]
    return "\n".join("  ".join(value.ljust(width) for value, width in zip(line, widths,
                                                                          strict=True)).rstrip()
                     for line in lines)


def _cell(value: Any) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return str(value)


def cli_actor() -> Actor:
    """The operator running the command, by their OS user name."""
    try:
        return Actor.cli(getpass.getuser())
    except (OSError, KeyError):  # no user name in some containers
        return Actor.cli("unknown")


def now() -> datetime:
    """The current UTC instant for this command."""
    return SystemClock().now()


def parse_instant(text: str | None) -> datetime:
    """An `--at` instant: ISO 8601, UTC when no offset is given; now when absent."""
    if not text:
        return now()
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise CommandError(f"--at: not an ISO 8601 instant: {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


async def _schema_ready(database: Database) -> None:
    """SQLite is migrated on the spot; PostgreSQL must have been upgraded by its operator."""
    if database.is_sqlite:
        await upgrade(database.engine)
        return
    url = database.engine.url.render_as_string(hide_password=False)
    heads = set(ScriptDirectory.from_config(alembic_config(url)).get_heads())
    async with database.engine.connect() as conn:
        current = set(await conn.run_sync(
            lambda sync: MigrationContext.configure(sync).get_current_heads()))
    if current != heads:
        state = "has no Engage schema" if not current else "is not at the newest schema"
        raise CommandError(f"the database {state}: run `engage db upgrade`")


@asynccontextmanager
async def open_database(settings: Settings, *,
                        migrate: bool = False) -> AsyncIterator[Database]:
    """The configured database, ready for use (`migrate`: upgraded to the newest schema, on
    either backend); closed afterwards. An unreachable database is one error line."""
    database = Database(settings.database_url)
    try:
        try:
            await (upgrade(database.engine) if migrate else _schema_ready(database))
        except (OSError, SQLAlchemyError, AlembicError) as exc:
            reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
            raise CommandError(f"cannot open the database: {reason}") from None
        yield database
    finally:
        await database.dispose()


@contextmanager
def refused() -> Iterator[None]:
    """Turn a refused change into one clear error line (the transaction is rolled back)."""
    try:
        yield
    except (EnrolmentError, VisitError, OnCallError) as exc:
        raise CommandError(str(exc)) from None
    except IntegrityError:
        # Only a concurrent change with the same subject, phone or id gets past the checks.
        raise CommandError("refused by the database (a concurrent change with the same "
                           "subject, phone or id?); nothing was written") from None


@asynccontextmanager
async def writing(settings: Settings) -> AsyncIterator[AsyncSession]:
    """One change to the configured database: a session committed at the end, a refused change
    one error line (nothing written)."""
    async with open_database(settings) as database:
        with refused():
            async with database.write() as session:
                yield session


@asynccontextmanager
async def reading(settings: Settings) -> AsyncIterator[AsyncSession]:
    """A read of the configured database (never commits); a refused request is one error line
    (an unknown site, say)."""
    async with open_database(settings) as database:
        with refused():
            async with database.read() as session:
                yield session

"""Column types that behave the same on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import DateTime, Dialect
from sqlalchemy.engine import processors
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime in, an aware UTC datetime out, on every backend.

    SQLite has no time zone type and hands back naive values, so everything is stored as UTC and
    tagged UTC on the way out. Naive datetimes are refused: they are always a bug here.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        if value.tzinfo is not UTC:  # most values are UTC already: skip the conversion
            value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    # SQLite: the two steps above and the dialect's own (datetime <-> its text format) in one
    # function each. Every dose, outbox and audit row has several of these columns, and the
    # planner reads and writes hundreds of rows an instant; the stored text is the same.

    def bind_processor(self, dialect: Dialect) -> Any:
        impl = cast(Any, self.dialect_impl(dialect)).impl_instance
        if dialect.name != "sqlite" or getattr(impl, "_storage_format", None) != _SQLITE_FORMAT:
            return super().bind_processor(dialect)

        def process(value: datetime | None) -> str | None:
            if value is None:
                return None
            if value.tzinfo is None:
                raise ValueError("naive datetime given to a UTC column")
            if value.tzinfo is not UTC:
                value = value.astimezone(UTC)
            return value.replace(tzinfo=None).isoformat(" ", "microseconds")

        return process

    def result_processor(self, dialect: Dialect, coltype: object) -> Any:
        impl = cast(Any, self.dialect_impl(dialect)).impl_instance
        if (dialect.name != "sqlite" or getattr(impl, "_storage_format", None) != _SQLITE_FORMAT
                or getattr(impl, "_reg", None) is not None):
            return super().result_processor(dialect, coltype)
        parse = processors.str_to_datetime

        def process(value: Any) -> datetime | None:
            if value is None:
                return None
            parsed = parse(value)
            if parsed.tzinfo is None:
                return parsed.replace(tzinfo=UTC)
            return parsed.astimezone(UTC)

        return process


# SQLAlchemy's default text format of a SQLite DATETIME (what `isoformat(" ", "microseconds")`
# of a naive datetime writes too).
_SQLITE_FORMAT = ("%(year)04d-%(month)02d-%(day)02d %(hour)02d:%(minute)02d:%(second)02d"
                  ".%(microsecond)06d")

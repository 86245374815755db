"""What a session reads once for many callers (reports, digests and staff views ask for every
patient of a site in turn: one query, not one per patient), kept in `session.info` and
forgotten whenever the session flushes, commits or rolls back, or whoever changes what it was
read from says so (`SessionCache.forget`)."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

__all__ = ["SessionCache"]

K = TypeVar("K")
V = TypeVar("V")

_FORGOTTEN_AT = ("after_flush", "after_commit", "after_rollback")


class SessionCache(Generic[K, V]):
    """Values kept per session under `session.info[name]`."""

    def __init__(self, name: str) -> None:
        self.name = name

        def forget(session: Session, *_: Any) -> None:
            session.info.pop(name, None)

        self._forget = forget  # one object: listened to once per session

    def entries(self, session: AsyncSession) -> dict[K, V]:
        """The values kept now (none: an empty dict, not kept)."""
        kept: dict[K, V] = session.info.get(self.name, {})
        return kept

    def keep(self, session: AsyncSession, key: K, value: V) -> None:
        """Keep a value until the session next flushes, commits or rolls back."""
        kept: dict[K, V] | None = session.info.get(self.name)
        if kept is None:
            kept = session.info[self.name] = {}
            sync = session.sync_session
            for name in _FORGOTTEN_AT:
                if not event.contains(sync, name, self._forget):
                    event.listen(sync, name, self._forget)
        kept[key] = value

    def forget(self, session: AsyncSession) -> None:
        """Forget every value kept (what they were read from is changing)."""
        session.info.pop(self.name, None)

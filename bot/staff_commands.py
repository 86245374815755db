"""The staff command registry: feature modules register `/commands` and button actions here."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Awaitable
from datetime import datetime
from typing import Protocol as TypingProtocol

from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Staff
from study.replies import Reply
from trial.protocol import Protocol

log = logging.getLogger(__name__)


class StaffCommand(TypingProtocol):
    """`/name args` from a registered staff member."""

    def __call__(self, session: AsyncSession, protocol: Protocol, staff: Staff, args: str, *,
                 now: datetime) -> Awaitable[list[Reply]]: ...


class StaffAction(TypingProtocol):
    """A button a staff member pressed: `prefix:payload`, e.g. `alert:ack` + `17`."""

    def __call__(self, session: AsyncSession, protocol: Protocol, staff: Staff, payload: str, *,
                 now: datetime) -> Awaitable[list[Reply]]: ...


COMMANDS: dict[str, StaffCommand] = {}
ACTIONS: dict[str, StaffAction] = {}

# Modules that register staff commands when imported (each feature adds its own line); a
# missing one is skipped with a warning, one that fails inside fails loudly.
FEATURE_MODULES: list[str] = [
    "bot.staff_visits",
    "bot.staff_queries",
    "bot.staff_alerts",
    "bot.staff_media",
]


def register_command(name: str, fn: StaffCommand) -> None:
    """Make `/name` available to staff (a second registration of a name is a bug)."""
    name = name.lstrip("/").lower()
    if name in COMMANDS and COMMANDS[name] is not fn:
        raise ValueError(f"staff command /{name} is registered twice")
    COMMANDS[name] = fn


def register_action(prefix: str, fn: StaffAction) -> None:
    """Route button actions starting with `prefix:` to fn."""
    if prefix in ACTIONS and ACTIONS[prefix] is not fn:
        raise ValueError(f"staff action {prefix} is registered twice")
    ACTIONS[prefix] = fn


_loaded = False


def load_features() -> None:
    """Import every feature module so that its commands are registered."""
    global _loaded
    if _loaded:
        return
    for name in FEATURE_MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            log.warning("staff feature module %s is not installed", name)
    _loaded = True


def find_action(action: str) -> tuple[StaffAction, str] | None:
    """The handler of a button action and its payload (longest registered prefix wins)."""
    parts = action.split(":")
    for cut in range(len(parts) - 1, 0, -1):
        prefix = ":".join(parts[:cut])
        if prefix in ACTIONS:
            return ACTIONS[prefix], ":".join(parts[cut:])
    return None


async def staff_help(session: AsyncSession, protocol: Protocol, staff: Staff, args: str, *,
                     now: datetime) -> list[Reply]:
    """/help: the commands this deployment offers."""
    names = sorted({*COMMANDS, "help"})
    return [Reply("chat.staff_help", {"commands": " ".join(f"/{n}" for n in names)})]


register_command("help", staff_help)

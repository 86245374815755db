"""Staff commands, aiogram-style: each feature module has one `CommandRouter` with its
`/commands` and button actions, and `bot/staff.py` includes every router by importing it.

    router = CommandRouter("alerts")

    @router.command("ack")
    async def ack(session, protocol, staff, args, *, now): ...

    @router.action(AlertAction, verb="ack")
    async def ack_button(session, protocol, staff, action, *, now): ...

A command gets the text after `/name`; an action handler gets the pressed action, unpacked by
`messages.actions` (a malformed one reaches no handler). A name or an action routed twice is
refused when the routers are included, not when a message arrives.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar
from typing import Protocol as TypingProtocol

from sqlalchemy.ext.asyncio import AsyncSession

from messages import actions
from messages.actions import Action
from storage.models import Staff
from study.replies import Reply
from trial.protocol import Protocol

A = TypeVar("A", bound=Action, contravariant=True)
K = TypeVar("K", bound=Action)


class StaffCommand(TypingProtocol):
    """`/name args` from a registered staff member."""

    def __call__(self, session: AsyncSession, protocol: Protocol, staff: Staff, args: str, *,
                 now: datetime) -> Awaitable[list[Reply]]: ...


class StaffAction(TypingProtocol[A]):
    """A button a staff member pressed, e.g. `AlertAction("ack", 17)`."""

    def __call__(self, session: AsyncSession, protocol: Protocol, staff: Staff, action: A, *,
                 now: datetime) -> Awaitable[list[Reply]]: ...


# An action route: its kind and the field values it matches (e.g. verb="ack").
_Route = tuple[type[Action], tuple[tuple[str, object], ...]]


class CommandRouter:
    """One feature's staff commands and button actions."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.commands: dict[str, StaffCommand] = {}
        self.actions: dict[_Route, StaffAction[Any]] = {}

    def command(self, *names: str) -> Callable[[StaffCommand], StaffCommand]:
        """Route `/name` (each of `names`) to the decorated handler."""
        def register(handler: StaffCommand) -> StaffCommand:
            for name in names:
                key = name.lstrip("/").lower()
                if key in self.commands:
                    raise ValueError(f"staff command /{key} is routed twice in {self.name}")
                self.commands[key] = handler
            return handler
        return register

    def action(self, kind: type[K], **match: object
               ) -> Callable[[StaffAction[K]], StaffAction[K]]:
        """Route pressed actions of `kind` whose fields equal `match` to the handler."""
        route: _Route = (kind, tuple(sorted(match.items())))

        def register(handler: StaffAction[K]) -> StaffAction[K]:
            if route in self.actions:
                raise ValueError(f"staff action {kind.prefix} {match} is routed twice")
            self.actions[route] = handler
            return handler
        return register


class StaffCommands:
    """The staff commands of this deployment: the routers included, and /help listing them."""

    def __init__(self, *routers: CommandRouter) -> None:
        self.commands: dict[str, StaffCommand] = {"help": self.help}
        self.actions: dict[_Route, StaffAction[Any]] = {}
        for router in routers:
            self.include(router)

    def include(self, router: CommandRouter) -> None:
        """Add a feature's router; a command or an action already routed is a bug."""
        for name, handler in router.commands.items():
            if name in self.commands:
                raise ValueError(f"staff command /{name} of {router.name} is routed twice")
            self.commands[name] = handler
        for route, action_handler in router.actions.items():
            if route in self.actions:
                raise ValueError(f"staff action {route} of {router.name} is routed twice")
            self.actions[route] = action_handler

    def get(self, name: str) -> StaffCommand | None:
        """The handler of `/name`, or None."""
        return self.commands.get(name)

    def find_action(self, text: str) -> tuple[StaffAction[Any], Action] | None:
        """The handler of a pressed action and the action unpacked, or None."""
        action = actions.parse(text)
        if action is None:
            return None
        for (kind, match), handler in self.actions.items():
            if type(action) is kind and all(getattr(action, f) == v for f, v in match):
                return handler, action
        return None

    async def help(self, session: AsyncSession, protocol: Protocol, staff: Staff, args: str, *,
                   now: datetime) -> list[Reply]:
        """/help: the commands this deployment offers."""
        names = sorted(self.commands)
        return [Reply("chat.staff_help", {"commands": " ".join(f"/{n}" for n in names)})]

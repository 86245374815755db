"""The action a choice carries, one typed class per kind: the one owner of action strings.

A choice's action is a short string, `prefix:field:field` (`dose:taken:42`, `alert:ack:7`,
`page:adherence BJ01:2`, `lang:en`, `help`): the callback data of a Telegram button, the key of
a WeCom card's button, a WeChat menu's event, and what a typed SMS word stands for. Each kind is
one class here, with `pack()` and `unpack()` (like aiogram's `CallbackData`, which packs to the
same strings), so what a button sends is built and read by the same code on every channel. The
strings are those the outbox and patients' chats already hold: a change here is a change of
stored rows and of buttons already pressed.

`parse` reads any action (None when it is not one of ours). A packed action is at most 64 bytes
(Telegram's limit on callback data); a text field never holds the separator; a number is
decimal digits only and fits a PostgreSQL integer, so a forged id is refused before any query.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self, get_type_hints

SEPARATOR = ":"
MAX_BYTES = 64  # Telegram's callback data limit
MAX_ID = 2**31 - 1  # PostgreSQL integer
# A number field's smallest value (ids start at 1); `field(metadata={MIN: 0})` allows 0.
MIN = "min"


@dataclass(frozen=True)
class Action:
    """One action: `prefix`, then each field in order (an optional last field may be absent)."""

    prefix: ClassVar[str]
    _fields: ClassVar[tuple[tuple[str, type, bool, int], ...]]  # name, type, optional, min

    def __init_subclass__(cls, *, prefix: str = "", **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not prefix or SEPARATOR in prefix:
            raise TypeError(f"{cls.__name__} needs a prefix without {SEPARATOR!r}")
        if prefix in KINDS:
            raise TypeError(f"action prefix {prefix!r} is owned by {KINDS[prefix].__name__}")
        cls.prefix = prefix
        KINDS[prefix] = cls

    @classmethod
    def _spec(cls) -> tuple[tuple[str, type, bool, int], ...]:
        spec = cls.__dict__.get("_fields")
        if spec is None:
            hints = get_type_hints(cls)
            items = []
            for item in dataclasses.fields(cls):
                kind = hints[item.name]
                optional = kind == (int | None) or kind == (str | None)
                base = (int if kind in (int, int | None) else str)
                items.append((item.name, base, optional, int(item.metadata.get(MIN, 1))))
            spec = tuple(items)
            cls._fields = spec
        return spec

    def pack(self) -> str:
        """The action string; ValueError when a field cannot be packed or it is too long."""
        parts = [self.prefix]
        for name, kind, optional, least in self._spec():
            value = getattr(self, name)
            if value is None and optional:
                continue
            if kind is int:
                if not isinstance(value, int) or not least <= value <= MAX_ID:
                    raise ValueError(f"{self.prefix} {name} out of range: {value!r}")
            elif not isinstance(value, str) or SEPARATOR in value:
                raise ValueError(f"{self.prefix} {name} cannot be packed: {value!r}")
            parts.append(str(value))
        text = SEPARATOR.join(parts)
        if len(text.encode()) > MAX_BYTES:
            raise ValueError(f"action longer than {MAX_BYTES} bytes: {text!r}")
        return text

    @classmethod
    def unpack(cls, text: str) -> Self:
        """The action a string packs; ValueError when it is not one of this kind."""
        if len(text.encode()) > MAX_BYTES:
            raise ValueError(f"action longer than {MAX_BYTES} bytes")
        prefix, *parts = text.split(SEPARATOR)
        spec = cls._spec()
        fewest = len(spec) - 1 if spec and spec[-1][2] else len(spec)  # an optional last field
        if prefix != cls.prefix or not fewest <= len(parts) <= len(spec):
            raise ValueError(f"not a {cls.prefix} action: {text!r}")
        values: dict[str, object] = {}
        for (name, kind, _optional, least), part in zip(spec, parts, strict=False):
            if kind is int:
                if not (part.isascii() and part.isdigit()) or not least <= int(part) <= MAX_ID:
                    raise ValueError(f"{cls.prefix} {name} is not a number in range: {part!r}")
                values[name] = int(part)
            else:
                values[name] = part
        return cls(**values)


KINDS: dict[str, type[Action]] = {}


def parse(text: str | None) -> Action | None:
    """The action a string is, of whichever kind its prefix names; None if not one of ours."""
    if not text:
        return None
    kind = KINDS.get(text.split(SEPARATOR, 1)[0])
    if kind is None:
        return None
    try:
        return kind.unpack(text)
    except ValueError:
        return None


# -- the kinds ------------------------------------------------------------------------------
@dataclass(frozen=True)
class DoseAction(Action, prefix="dose"):
    """`dose:taken:42`: an answer to dose 42 (taken, missed, snooze, skip); without an id
    (`dose:taken`, a channel's menu) today's dose, as the typed keyword is."""

    answer: str
    dose_id: int | None = None


@dataclass(frozen=True)
class QuestionAction(Action, prefix="q"):
    """`q:3:2`: the answer `2` to the questionnaire's step 3 (`none`: not measured)."""

    step: str
    answer: str


@dataclass(frozen=True)
class ReportAction(Action, prefix="report"):
    """`report:start`: start the symptom questionnaire."""

    verb: str


@dataclass(frozen=True)
class AlertAction(Action, prefix="alert"):
    """`alert:ack:7`, `alert:resolve:7`, `alert:sae_reported:7`: a staff member's answer to
    alert 7; `alert:reviewed:N`: the digest's reports up to report N reviewed."""

    verb: str
    alert_id: int


@dataclass(frozen=True)
class PageAction(Action, prefix="page"):
    """`page:adherence BJ01:2`: page 2 of a staff command's answer (the command is re-run)."""

    command: str
    n: int = field(metadata={MIN: 0})


@dataclass(frozen=True)
class LanguageAction(Action, prefix="lang"):
    """`lang:en`: write to me in this language."""

    code: str


@dataclass(frozen=True)
class HelpAction(Action, prefix="help"):
    """`help`: the help reply (a channel's menu)."""


REPORT_START = ReportAction("start")

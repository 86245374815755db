"""What a unit of work wants said back: a catalogue message, not text."""

from __future__ import annotations

from dataclasses import dataclass, field

from messages.channel import Choice, Media


@dataclass(frozen=True)
class Reply:
    """A catalogue message to send to whoever wrote in, with its placeholders and buttons."""

    message_id: str
    params: dict[str, object] = field(default_factory=dict)
    choices: tuple[Choice, ...] = ()
    safety: bool = False  # goes in the safety lane: never held, never capped, sent at once
    attachment: Media | None = None  # a file resent by its reference (`/media N`)

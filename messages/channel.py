"""The channel contract every adapter (Telegram, SMS, sandbox, a future WeChat) implements."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class Choice:
    """One answer the recipient can pick: a button on Telegram, a numbered word by SMS."""

    label: str  # rendered text from the catalogue
    action: str  # compact action, e.g. "dose:taken:42" (fits Telegram's 64-byte callback data)
    sms_word: str = ""  # the word an SMS recipient types for it, e.g. "TAKEN"


# What a person can send besides text, in one vocabulary for every channel (an MMS picture is a
# photo, its audio a voice note); `location` carries "latitude,longitude" as its reference.
MEDIA_KINDS = ("photo", "voice", "video", "video_note", "audio", "document", "animation",
               "sticker", "location")


@dataclass(frozen=True)
class Media:
    """A file or a location someone sent, named by the provider's own reference (a Telegram
    file_id, a Twilio media URL), never its content: nothing is downloaded. The caption is the
    message's text."""

    kind: str  # one of MEDIA_KINDS
    reference: str
    mime: str = ""
    detail: dict[str, Any] = field(default_factory=dict)  # file_unique_id, duration, name...
    channel: str = ""  # where it came from: only that channel can resend a file id

    @property
    def is_link(self) -> bool:
        """A reference anyone with access can open (a Twilio media URL), not a provider's file
        id that only its own channel can resend."""
        return self.reference.startswith(("https://", "http://"))

    def as_dict(self) -> dict[str, Any]:
        """As stored in an inbound row's payload and a report's `parsed` (JSON)."""
        return {"kind": self.kind, "reference": self.reference, "mime": self.mime,
                **({"detail": self.detail} if self.detail else {}),
                **({"channel": self.channel} if self.channel else {})}

    @classmethod
    def from_dict(cls, value: Any) -> Media | None:
        """The stored form read back (None when it is not one)."""
        if not isinstance(value, dict) or not value.get("reference"):
            return None
        detail = value.get("detail")
        return cls(str(value.get("kind") or "document"), str(value["reference"]),
                   str(value.get("mime") or ""), dict(detail) if isinstance(detail, dict) else {},
                   str(value.get("channel") or ""))

    def attachment(self) -> bytes:
        """The reference as an outgoing message's `image`: the channel resends the file by it
        (Telegram by file_id); the outbox never holds the content."""
        return MEDIA_MARK + json.dumps(self.as_dict(), ensure_ascii=False).encode()


MEDIA_MARK = b"engage-media:"


def attached_media(image: bytes | None) -> Media | None:
    """The media reference an outgoing message's `image` carries (None: a PNG, or nothing)."""
    if image is None or not image.startswith(MEDIA_MARK):
        return None
    try:
        return Media.from_dict(json.loads(image[len(MEDIA_MARK):]))
    except ValueError:
        return None


@dataclass(frozen=True)
class OutgoingMessage:
    """What the dispatcher hands to a channel; `message_id` is the outbox row id. `text` is the
    outbox row's body, the whole text in the channel's form (by SMS its choice line and the
    site's signature included: `study.outgoing`), sent as it is."""

    message_id: int
    address: str  # Telegram chat id or E.164 phone number
    text: str
    choices: tuple[Choice, ...] = ()
    # A PNG (the digest's chart), or a media reference to resend (`attached_media`).
    image: bytes | None = None
    validity_seconds: int | None = None  # SMS: fail rather than arrive late
    language: str = ""  # the outbox row's language


@dataclass(frozen=True)
class SendResult:
    """A provider accepted the message."""

    provider_id: str
    status: str = "sent"  # the outbox's state: sent, or delivered when the provider says so


class SendError(Exception):
    """A send that did not go through."""


@dataclass
class TransientSendError(SendError):
    """Worth retrying: 429 (honour `retry_after`), 5xx, network errors."""

    reason: str
    retry_after: float | None = None
    # The provider may have accepted the message (e.g. a timeout after the request was written):
    # the dispatcher must not resend blindly.
    maybe_sent: bool = False

    def __str__(self) -> str:
        return self.reason


@dataclass
class PermanentSendError(SendError):
    """Never retry: blocked bot (403), SMS opt-out (21610), invalid number (21211)..."""

    reason: str
    unreachable: bool = False  # the recipient cannot be reached on this channel any more
    opted_out: bool = False  # the recipient said STOP at the provider
    code: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.reason


class Channel(Protocol):
    """Sends messages on one channel. Inbound is each adapter's own business (polling, webhook)."""

    name: str

    async def send(self, message: OutgoingMessage) -> SendResult:
        """Send one message; raise TransientSendError or PermanentSendError on failure."""
        ...


@dataclass(frozen=True)
class DeliveryFate:
    """What a provider's delivery status means, in no provider's words (`ReadsStatus`)."""

    failed: bool = False  # the message did not arrive
    unreachable: bool = False  # and the recipient cannot be reached on this channel any more
    opted_out: bool = False  # the recipient said STOP at the provider
    reason: str = ""  # for the audit trail, e.g. "twilio error 30005"


@runtime_checkable
class ReadsStatus(Protocol):
    """A channel whose provider reports delivery statuses later (Twilio's status callbacks):
    the dispatcher asks it what a status kept while its message was in flight means."""

    def read_status(self, status: str, detail: str) -> DeliveryFate:
        """The fate a status word and its stored detail (e.g. "ErrorCode 30005") stand for."""
        ...


@runtime_checkable
class ConfirmsSends(Protocol):
    """A channel whose provider can be asked whether a message of unknown fate went out (Twilio's
    message list). The dispatcher asks before it sends such a safety message again; a channel
    that cannot be asked (Telegram) gets it again at once: for safety, a duplicate is better
    than a loss."""

    async def was_sent(self, message: OutgoingMessage, since: datetime) -> SendResult | None:
        """The provider's record of this message (same recipient and text) accepted at or
        after `since`; None if it has none (it failed, or never arrived there). Raise
        TransientSendError when the provider cannot be asked."""
        ...

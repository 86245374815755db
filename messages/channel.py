"""The channel contract every adapter (Telegram, SMS, sandbox, a future WeChat) implements."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class Choice:
    """One answer the recipient can pick: a button on Telegram, a numbered word by SMS."""

    label: str  # rendered text from the catalogue
    action: str  # compact action, e.g. "dose:taken:42" (fits Telegram's 64-byte callback data)
    sms_word: str = ""  # the word an SMS recipient types for it, e.g. "TAKEN"


@dataclass(frozen=True)
class OutgoingMessage:
    """What the dispatcher hands to a channel; `message_id` is the outbox row id."""

    message_id: int
    address: str  # Telegram chat id or E.164 phone number
    text: str
    choices: tuple[Choice, ...] = ()
    image: bytes | None = None
    validity_seconds: int | None = None  # SMS: fail rather than arrive late
    language: str = ""  # the outbox row's language (SMS renders "回复：1 已服…" in it)
    signature: str = ""  # SMS: the site's name, signed after the choice line


@dataclass(frozen=True)
class SendResult:
    """A provider accepted the message."""

    provider_id: str
    status: str = "sent"  # sent|queued|accepted|delivered


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

"""Who wrote, when it was nobody we know: an unregistered sender as staff see it (masked)."""

from __future__ import annotations

from messages import catalogue
from storage.models import Alert

# The kind of an alert opened for a text from a number or chat we do not know.
UNREGISTERED = "unregistered"


def mask_sender(sender: str) -> str:
    """A sender's phone or chat id as staff see it, its last four digits only:
    `+8613900000021` -> `+86139****0021`, `telegram:123456789` -> `Telegram ****6789`."""
    channel, _, address = sender.rpartition(":")
    head = address[:max(1, len(address) - 8)] if address.startswith("+") else ""
    shown = f"{head}****{address[-4:]}" if len(address) > 4 else "****"
    return f"{channel.capitalize()} {shown}" if channel else shown


def subject_of(alert: Alert, subject: str | None, language: str) -> str:
    """Who an alert is about: the subject id, or the masked unregistered sender, or `-`."""
    if subject and subject != "-":
        return subject
    if alert.sender:
        return catalogue.render("alert.unregistered_sender", language,
                                sender=mask_sender(alert.sender))
    return "-"

"""Twilio's own words: its error codes, its failed statuses, the keywords it answers itself.

The carrier opt-out words a patient writes (STOP, 退订...) stay in `messages.keywords`: the
conversation understands them on every channel, as language. What is here is what Twilio says
or does: the codes it reports, and the words on which it replies (and, after STOP, blocks the
number) before we see the message.
"""

from __future__ import annotations

from messages.channel import DeliveryFate
from messages.keywords import Keyword, normalize
from storage import outbox

# Error codes that say something about the number, not just this message: refused when
# sending (21xxx, REST) or reported later by a delivery status callback (300xx).
OPTED_OUT = 21610
UNREACHABLE = frozenset({21211, 21408, 21612, 21614, 21635, 30005, 30006})
TOO_MANY = 20429
# Twilio's message statuses as the outbox's states (`storage.outbox`): a message Twilio holds
# or has passed on is sent; "canceled" is a scheduled message never sent. Past this adapter no
# code reads Twilio's words.
STATES = {"accepted": outbox.SENT, "scheduled": outbox.SENT, "queued": outbox.SENT,
          "sending": outbox.SENT, "sent": outbox.SENT, "delivered": outbox.DELIVERED,
          "read": outbox.READ, "failed": outbox.FAILED, "undelivered": outbox.UNDELIVERED,
          "canceled": outbox.CANCELLED}
# States of a message that did not arrive (a cancelled one was never sent: nothing follows).
FAILED = frozenset({outbox.FAILED, outbox.UNDELIVERED})
# Statuses in Twilio's message list of a message that did not go out.
NOT_SENT = frozenset(word for word, state in STATES.items()
                     if state in FAILED | {outbox.CANCELLED})

# Twilio's own keywords: on these Twilio replies (and, after a STOP word, blocks us) itself.
TWILIO_STOP = frozenset({"stop", "stopall", "unsubscribe", "cancel", "end", "quit", "revoke",
                         "optout"})
TWILIO_START = frozenset({"start", "yes", "unstop"})
TWILIO_HELP = frozenset({"help", "info"})
# Advanced Opt-Out's OptOutType: the keyword Twilio recognised (in any language it knows).
OPT_OUT_TYPES = {"STOP": Keyword.STOP, "START": Keyword.START, "HELP": Keyword.HELP}


def answered_by_twilio(text: str, opt_out_type: str | None) -> bool:
    """Twilio already replied to this SMS itself (its keywords, or Advanced Opt-Out)."""
    word = normalize(text)
    return bool(opt_out_type) or word in TWILIO_STOP | TWILIO_START | TWILIO_HELP


def error_code(detail: str) -> int:
    """The Twilio ErrorCode in a callback's detail ("ErrorCode 30005"), or 0."""
    word = detail.removeprefix("ErrorCode ").split(" ", 1)[0]
    return int(word) if word.isdigit() else 0


def detail(code: int) -> str:
    """The detail a callback's ErrorCode is kept as ("ErrorCode 30005", or nothing)."""
    return f"ErrorCode {code}" if code else ""


def state(status: str) -> str:
    """The outbox state a Twilio status stands for; an unknown word as it came (the outbox
    records it as unrecognised and changes nothing)."""
    return STATES.get(status.lower(), status)


def accepted(status: str | None) -> str:
    """The outbox state of a message Twilio took (its status on create, or in its list)."""
    return outbox.DELIVERED if state(status or "queued") == outbox.DELIVERED else outbox.SENT


def fate(status: str, code: int) -> DeliveryFate:
    """What a delivery state (`state`) and its ErrorCode mean for the message and the
    number."""
    return DeliveryFate(failed=status in FAILED,
                        unreachable=code == OPTED_OUT or code in UNREACHABLE,
                        opted_out=code == OPTED_OUT,
                        reason=f"twilio error {code}" if code else f"twilio {status}")

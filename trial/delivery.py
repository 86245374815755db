"""Delivery policy: which outgoing messages go now, wait, move to another channel or never go.

Pure rules (no I/O, no clock): who may receive routine messages, quiet hours, the daily SMS cap
and its importance table (`[sms.importance]` in the protocol file), the reroute rule, and
`screen()`, which the outbox dispatcher calls on every claimed row before sending it. The
dispatcher loads the rows and their recipients, calls `screen()`, applies the verdict and sends.

Safety messages (alert pages, replies to urgent reports) and replies (answers to what the
recipient just wrote, even STOP) are never cancelled for a pause, held by quiet hours or capped:
that screening is for the routine messages we start.
"""

from __future__ import annotations

import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from datetime import time as clock_time
from zoneinfo import ZoneInfo

from trial.protocol import QuietHours, Sms

# The one patient status in which routine messages (reminders, notices, digests...) are sent.
ROUTINE_STATUS = "active"
SAFETY = "safety"
ROUTINE = "routine"
# Message kinds the policy knows by name (the outbox row's `kind`); every other kind is a
# message we start (a reminder, a notice, a page...).
REPLY = "reply"  # an answer to what the recipient just wrote

# Verdicts of `screen`.
SEND = "send"
CANCEL = "cancel"
HOLD = "hold"


def kind_of(key: str) -> str:
    """The kind of a message from its dedupe key's first part (`reply:12:0` is a reply,
    `dose:reminder:7` a dose message): the default of the outbox's `kind` column."""
    return key.partition(":")[0][:16]


# --- who receives routine messages -------------------------------------------------------------

def routine_refusal(status: str, opted_out: bool) -> str | None:
    """Why a patient gets no routine message (paused, withdrawn, opted out), or None."""
    if status != ROUTINE_STATUS:
        return f"patient {status}"
    if opted_out:
        return "patient opted out"
    return None


def receives_routine(status: str, opted_out: bool) -> bool:
    """May this patient receive routine messages (and have doses planned): active and not
    opted out. The one predicate; its SQL form is `study.recipients.receives_routine_sql`."""
    return routine_refusal(status, opted_out) is None


# --- quiet hours -------------------------------------------------------------------------------

def is_quiet(now: datetime, quiet: QuietHours, tz: str | ZoneInfo) -> bool:
    """Whether an instant is inside the recipient's local quiet hours."""
    zone = tz if isinstance(tz, ZoneInfo) else ZoneInfo(tz)
    return quiet.contains(now.astimezone(zone).time().replace(tzinfo=None))


def quiet_until(quiet: QuietHours, now: datetime, tz: ZoneInfo) -> datetime | None:
    """The end of the quiet window `now` falls in (UTC), or None outside quiet hours."""
    local = now.astimezone(tz)
    if not quiet.contains(local.time()):
        return None
    end = datetime.combine(local.date(), quiet.end, tzinfo=tz).astimezone(UTC)
    if end <= now:
        end = datetime.combine(local.date() + timedelta(days=1), quiet.end,
                               tzinfo=tz).astimezone(UTC)
    return end


# --- the daily SMS cap -------------------------------------------------------------------------

def local_day(now: datetime, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """The recipient's local calendar day around `now`, as a UTC interval [start, end)."""
    day = now.astimezone(tz).date()
    start = datetime.combine(day, clock_time(0), tzinfo=tz).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), clock_time(0), tzinfo=tz).astimezone(UTC)
    return start, end


def importance(sms: Sms, template_id: str) -> int:
    """How much a routine message matters when the daily SMS cap forces a choice: the
    protocol's `[sms.importance]` rank of the longest template id prefix that matches."""
    return _importance(sms.importance, sms.default_importance, template_id)


def _importance(table: Mapping[str, int], default: int, template_id: str) -> int:
    best, length = default, -1
    for prefix, rank in table.items():
        if template_id.startswith(prefix) and len(prefix) > length:
            best, length = rank, len(prefix)
    return best


CapRank = tuple[int, datetime, int]


def cap_rank(sms: Sms, template_id: str, due_at: datetime, message_id: int) -> CapRank:
    """The order in which the cap keeps routine SMS: more important first, then earlier due,
    then older row."""
    return (-importance(sms, template_id), due_at, message_id)


def cap_left(cap: int, *, used: int, in_flight: int, accepted: int) -> int:
    """How many more routine SMS a number may get today: the cap less those that went today
    (or may have: `used`), those other claims are sending (`in_flight`) and those this claim
    already let through (`accepted`)."""
    return cap - used - in_flight - accepted


def over_cap(cap: int, left: int, *, mine: CapRank, others: Iterable[CapRank]) -> str | None:
    """Why a routine SMS must be dropped for the daily cap, or None if it fits.

    `left`: `cap_left` for its number; `others`: the ranks of the routine SMS still queued for
    today to the number (not accepted yet), which compete with this one (`mine`) for what is
    left, the more important first (not needed when nothing is left).
    """
    if left <= 0:
        return f"daily SMS cap of {cap} reached"
    ahead = sum(1 for other in others if other < mine)
    if ahead >= left:
        return f"daily SMS cap of {cap}: {ahead} more important SMS due today"
    return None


# --- the reroute rule --------------------------------------------------------------------------

class Address(typing.Protocol):
    """Where a message goes (`study.recipients.Route`)."""

    @property
    def channel(self) -> str: ...

    @property
    def address(self) -> str: ...


def reroute(channel: str, *, reachable: bool, route: Address | None
            ) -> tuple[Address | None, str | None]:
    """A patient's message on `channel`: stays (None, None) while they are `reachable` there;
    else moves to their current `route` for its lane (route, None), or goes nowhere (None,
    reason) when there is none or it is the same channel."""
    if reachable:
        return None, None
    if route is None or route.channel == channel:
        return None, f"patient unreachable by {channel}"
    return route, None


# --- screening one message ---------------------------------------------------------------------

class Message(typing.Protocol):
    """What screening reads of an outbox row."""

    @property
    def kind(self) -> str: ...

    @property
    def lane(self) -> str: ...

    @property
    def channel(self) -> str: ...


@dataclass(frozen=True)
class RecipientState:
    """What screening needs to know about a message's recipient.

    `status`/`opted_out`: the patient's (None for a staff member or nobody known); `active`: a
    staff member's; `tz`: the patient's zone, or the staff member's site's; `reachable`: a
    patient is reachable on the message's channel; `route`: where a patient's messages of the
    message's lane go now (read only when not `reachable`).
    """

    status: str | None = None
    opted_out: bool = False
    active: bool = True
    tz: ZoneInfo | None = None
    reachable: bool = True
    route: Address | None = None

    @property
    def is_patient(self) -> bool:
        return self.status is not None


@dataclass(frozen=True)
class Verdict:
    """What to do with a message: SEND (on `route` when set: moved off a channel that cannot
    reach the patient), CANCEL (`reason`), or HOLD until `until`. `capped`: a routine SMS the
    daily cap decides on (`over_cap`) before it goes."""

    action: str
    reason: str = ""
    until: datetime | None = None
    route: Address | None = None
    capped: bool = False


def screened(message: Message) -> bool:
    """Whether a message is screened as one we start (routine lane, not a reply)."""
    return message.lane == ROUTINE and message.kind != REPLY


def screen(message: Message, recipient: RecipientState, *, quiet: QuietHours,
           now: datetime) -> Verdict:
    """The delivery policy for one claimed message as of `now`.

    In order: a staff member no longer active gets nothing; a patient's routine message is
    cancelled when they may not receive routine messages; a patient's message (not a reply)
    moves off a channel that cannot reach them, or is cancelled when none can; a routine
    message waits for the end of the recipient's quiet hours; a routine SMS is subject to the
    daily cap.
    """
    if not recipient.active:
        return Verdict(CANCEL, "staff member no longer active")
    routine = screened(message)
    route: Address | None = None
    if recipient.is_patient and message.kind != REPLY:
        if message.lane != SAFETY:
            assert recipient.status is not None
            refusal = routine_refusal(recipient.status, recipient.opted_out)
            if refusal is not None:
                return Verdict(CANCEL, refusal)
        route, refusal = reroute(message.channel, reachable=recipient.reachable,
                                 route=recipient.route)
        if refusal is not None:
            return Verdict(CANCEL, refusal)
    if routine and recipient.tz is not None:
        held = quiet_until(quiet, now, recipient.tz)
        if held is not None:
            return Verdict(HOLD, f"quiet hours until {held.isoformat()}", until=held,
                           route=route)
    channel = route.channel if route is not None else message.channel
    return Verdict(SEND, route=route, capped=routine and channel == "sms")

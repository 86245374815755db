"""The channel-neutral conversation core: one inbound event in, domain actions and replies out.

Every adapter (Telegram, SMS, sandbox, a future WeChat) turns what it receives into an
`InboundEvent` and awaits `Conversation.handle`, which

1. stores the message in its own committed transaction (unique per channel and provider id, so
   a replay, even a concurrent one, is stored once) before anything is acknowledged;
2. claims it (a conditional UPDATE: exactly one handler wins), identifies the sender and routes
   it: linking, keywords, buttons, an open questionnaire, staff commands, else a report;
3. queues the replies, rendered in the recipient's language, in the same transaction as the
   domain change, and marks the message handled;
4. wakes the dispatcher when it queued something in the safety lane (replies or alert pages,
   counted by `storage.outbox` on the session as they are queued).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from bot import staff_sms
from bot.staff import STAFF_COMMANDS
from bot.staff_commands import StaffCommands
from messages import catalogue
from messages.actions import (
    REPORT_START,
    DoseAction,
    HelpAction,
    LanguageAction,
    QuestionAction,
)
from messages.actions import parse as parse_action
from messages.channel import Choice, Media
from messages.keywords import Keyword, language_name, normalize, parse_keyword, parse_language
from storage import audit, outbox
from storage.audit import Actor
from storage.db import Database, insert_new
from storage.models import InboundMessage, Patient, Staff
from study import (
    contacts,
    linking,
    optout,
    outgoing,
    questionnaire,
    reachability,
    staff_access,
    unregistered,
)
from study.enrolment import CODE_ALPHABET, CODE_LENGTH
from study.recipients import contact_point
from study.replies import Reply
from trial import intents
from trial.clock import Clock
from trial.protocol import LANGUAGES, Protocol

log = logging.getLogger(__name__)

TELEGRAM = "telegram"
SMS = "sms"
PATIENT_COMMANDS = {"report": Keyword.REPORT, "help": Keyword.HELP, "stop": Keyword.STOP,
                    "start": Keyword.START, "language": Keyword.LANGUAGE,
                    "lang": Keyword.LANGUAGE}
DOSE_ANSWERS = {Keyword.TAKEN: "taken", Keyword.SKIP: "skip", Keyword.SNOOZE: "snooze",
                Keyword.MISSED: "missed"}
# A typed answer means what the button it names means (`1`, 已服: `dose:taken`, today's dose).
KEYWORD_ACTIONS = {**{keyword: DoseAction(answer).pack() for keyword, answer in
                      DOSE_ANSWERS.items()}, Keyword.REPORT: REPORT_START.pack()}
# A stranger's text that triaged as urgent: answered every time, with the safety reply.
URGENT_STRANGER = "unregistered_urgent"
# A contact-point channel's event carrying a link code (WeChat: a QR code's scene).
LINK = "link:"
# Triage reasons a "not taken today" message gives by itself: no symptom to report.
_DOSE_ONLY_REASONS = frozenset({"missed_dose", "unclassified_symptom"})


def _storable(value: Any) -> Any:
    if isinstance(value, str):
        # NUL: PostgreSQL text and jsonb refuse it (SQLite would keep it).
        return value.replace("\x00", "").encode("utf-16", "surrogatepass").decode(
            "utf-16", "replace")
    if isinstance(value, dict):
        return {_storable(k): _storable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_storable(v) for v in value]
    return value


@dataclass(frozen=True)
class InboundEvent:
    """What a person sent, on any channel; `action` is a pressed button's action string."""

    channel: str
    external_id: str  # Telegram update_id, Twilio MessageSid: unique per channel
    sender: str  # Telegram user id, or E.164 phone number
    text: str
    action: str | None
    received_at: datetime
    payload: dict[str, Any] = field(default_factory=dict)
    # What came besides text (a photo, a voice note, an MMS's pictures), filled by the channel
    # adapter; the text is then the caption.
    media: tuple[Media, ...] = ()
    # What the provider made of the message, filled by its adapter: the keyword it recognised
    # (over what the text says), and whether it answered the message itself (then an opt-out
    # or opt-in gets no reply of ours: the provider replied, and blocks us after a STOP).
    keyword: Keyword | None = None
    answered_by_provider: bool = False

    def storable(self) -> InboundEvent:
        """The event with lone UTF-16 surrogates replaced (U+FFFD): valid JSON can carry them,
        no database can store them, and one unstorable update must not block those behind it."""
        return replace(self, external_id=_storable(self.external_id),
                       sender=_storable(self.sender), text=_storable(self.text),
                       action=None if self.action is None else _storable(self.action),
                       payload=_storable(self.payload),
                       media=tuple(m for m in (Media.from_dict(_storable(m.as_dict()))
                                               for m in self.media) if m is not None))

    def stored_payload(self) -> dict[str, Any]:
        """The inbound row's payload: the adapter's, the pressed action, the media references,
        what the provider made of it."""
        media = {"media": [m.as_dict() for m in self.media]} if self.media else {}
        keyword = {"keyword": str(self.keyword)} if self.keyword is not None else {}
        answered = {"answered_by_provider": True} if self.answered_by_provider else {}
        return {**self.payload, **media, **keyword, **answered, "action": self.action}

    @classmethod
    def from_row(cls, row: InboundMessage) -> InboundEvent:
        """A stored message as the event it was."""
        payload = dict(row.payload)
        action = payload.pop("action", None)
        media = tuple(m for m in map(Media.from_dict, payload.pop("media", None) or [])
                      if m is not None)
        keyword = payload.pop("keyword", None)
        return cls(row.channel, row.external_id, row.sender, row.text, action, row.received_at,
                   payload, media,
                   Keyword(keyword) if keyword in tuple(Keyword) else None,
                   payload.pop("answered_by_provider", None) is True)

    @property
    def address(self) -> str:
        """Where replies go: the chat it came from (a private chat's id is the user's)."""
        return str(self.payload.get("chat_id") or self.sender)


@dataclass(frozen=True)
class Handled:
    """What became of an inbound event."""

    inbound_id: int
    duplicate: bool
    outcome: str
    replies: int = 0


@dataclass
class _Sender:
    patient: Patient | None
    staff: Staff | None
    language: str


def _contact_channel(channel: str) -> bool:
    """A channel whose addresses are contact points (WeChat, WeCom), not a column."""
    return channel not in (TELEGRAM, SMS)


def _code_like(text: str) -> str | None:
    """A message that is nothing but a link code (typed on a contact-point channel)."""
    word = text.strip().upper()
    if len(word) == CODE_LENGTH and all(c in CODE_ALPHABET for c in word):
        return word
    return None


def _command(text: str) -> tuple[str, str] | None:
    """`/name@bot args` -> (name, args)."""
    if not text.startswith("/"):
        return None
    head, _, args = text[1:].partition(" ")
    name = head.split("@", 1)[0].lower()
    return (name, args.strip()) if name else None


def _language_choice(text: str) -> str | None:
    """`LANG EN`, `语言 中文`, `language english`, `English` -> the language asked for."""
    words = normalize(text).split()
    if len(words) == 2 and parse_keyword(words[0]) is Keyword.LANGUAGE:
        return parse_language(words[1])
    return language_name(text)  # a button's label typed: 中文, English


def _guess_language(event: InboundEvent) -> str:
    """The language for someone we do not know yet."""
    if event.channel == SMS:
        return "zh" if event.sender.startswith("+86") else "en"
    code = str(event.payload.get("language_code") or "")
    return "en" if code.startswith("en") else "zh"


class Conversation:
    """Handles inbound events from every channel the same way."""

    def __init__(self, db: Database, protocol: Protocol, clock: Clock, *,
                 wake: Callable[[], None] | None = None,
                 staff_commands: StaffCommands = STAFF_COMMANDS) -> None:
        self.db = db
        self.protocol = protocol
        self.clock = clock
        self.wake = wake
        self.staff_commands = staff_commands

    # -- the entry point ---------------------------------------------------------------------
    async def handle(self, event: InboundEvent) -> Handled:
        """Store, then handle an inbound event once, however often it is delivered."""
        event = event.storable()
        inbound_id = await self._store(event)
        now = self.clock.now()
        try:
            async with self.db.write() as session:
                if not await self._claim(session, inbound_id, now):
                    return Handled(inbound_id, True, "duplicate")
                before = outbox.safety_queued(session)
                # Every change this message causes names it in the audit trail.
                with audit.cause(inbound_id=inbound_id, reason=f"{event.channel} message "
                                 f"{inbound_id}"):
                    outcome, count = await self._process(session, inbound_id, event, now)
                urgent = outbox.safety_queued(session) > before
        except (DBAPIError, OSError):
            raise  # the database is unwell: leave the message unhandled so it is retried
        except Exception:
            log.exception("inbound %s could not be handled", inbound_id)
            outcome, count, urgent = await self._failed(inbound_id, event, now), 1, False
        if urgent and self.wake is not None:
            self.wake()
        return Handled(inbound_id, False, outcome, count)

    async def handle_pending(self, *, older_than: timedelta = timedelta(minutes=1),
                             handle: Callable[[InboundEvent], Awaitable[object]] | None = None,
                             ) -> int:
        """Handle messages stored but never handled (a crash between storing and handling);
        `handle` instead of `self.handle` (e.g. one that passes a message failing for good)."""
        now = self.clock.now()
        async with self.db.read() as session:
            rows = list((await session.execute(select(InboundMessage).where(
                InboundMessage.handled_at.is_(None),
                InboundMessage.received_at < now - older_than).order_by(InboundMessage.id)
                .limit(100))).scalars())
        for row in rows:
            await (handle or self.handle)(InboundEvent.from_row(row))
        return len(rows)

    # -- storing and claiming ----------------------------------------------------------------
    async def _store(self, event: InboundEvent) -> int:
        values = {"channel": event.channel, "external_id": event.external_id[:64],
                  "sender": event.sender[:64], "text": event.text,
                  "payload": event.stored_payload(),
                  "received_at": event.received_at}
        async with self.db.write() as session:
            new_id = (await session.execute(
                insert_new(session, InboundMessage, unique=["channel", "external_id"])
                .values(**values).returning(InboundMessage.id))).scalar_one_or_none()
            if new_id is not None:
                return int(new_id)
            return int((await session.execute(select(InboundMessage.id).where(
                InboundMessage.channel == event.channel,
                InboundMessage.external_id == event.external_id[:64]))).scalar_one())

    async def store_all(self, events: list[InboundEvent]) -> None:
        """Store events (one transaction) to be handled later, by `handle` or, after a crash,
        by `handle_pending`: what a poller confirms to its provider once this returns."""
        async with self.db.write() as session:
            for event in (e.storable() for e in events):
                await session.execute(
                    insert_new(session, InboundMessage, unique=["channel", "external_id"])
                    .values(channel=event.channel, external_id=event.external_id[:64],
                            sender=event.sender[:64], text=event.text,
                            payload=event.stored_payload(),
                            received_at=event.received_at))

    @staticmethod
    async def _claim(session: AsyncSession, inbound_id: int, now: datetime) -> bool:
        # The row lock makes a concurrent duplicate wait here, then see handled_at set.
        result: CursorResult[tuple[()]] = await session.execute(  # type: ignore[assignment]
            update(InboundMessage).where(InboundMessage.id == inbound_id,
                                         InboundMessage.handled_at.is_(None))
            .values(handled_at=now).execution_options(synchronize_session=False))
        return result.rowcount == 1

    async def _failed(self, inbound_id: int, event: InboundEvent, now: datetime) -> str:
        """A bug while handling: keep the message, mark it, and tell the sender to retry."""
        async with self.db.write() as session:
            row = await session.get(InboundMessage, inbound_id)
            if row is None or (row.handled_at is not None and row.outcome is not None):
                return "error"
            row.handled_at, row.outcome = now, "error"
            sender = await self._identify(session, event)
            if event.channel != SMS or sender.patient is not None:
                await self._enqueue(session, inbound_id, event, sender,
                                    [Reply("chat.error")], now)
        return "error"

    # -- routing -----------------------------------------------------------------------------
    async def _identify(self, session: AsyncSession, event: InboundEvent) -> _Sender:
        if event.channel == SMS:
            patient = (await session.execute(select(Patient).where(
                Patient.phone == event.sender))).scalars().first()
            if patient is None:  # a staff member's registered phone (ACK 12 by SMS)
                staff = await staff_access.active_staff_by_phone(session, event.sender)
                if staff is not None:
                    return _Sender(None, staff, staff.language)
            return _Sender(patient, None, patient.language if patient else
                           _guess_language(event))
        if _contact_channel(event.channel):
            point = await contacts.find(session, event.channel, event.sender)
            person = await contacts.owner(session, point) if point is not None else None
            if isinstance(person, Staff) and person.active:
                return _Sender(None, person, person.language)
            if isinstance(person, Patient):
                return _Sender(person, None, person.language)
            return _Sender(None, None, _guess_language(event))
        if not event.sender.lstrip("-").isdigit():
            return _Sender(None, None, _guess_language(event))
        user_id = int(event.sender)
        staff = await staff_access.active_staff(session, user_id)
        if staff is not None:
            return _Sender(None, staff, staff.language)
        patient = (await session.execute(select(Patient).where(
            Patient.telegram_id == user_id))).scalar_one_or_none()
        return _Sender(patient, None, patient.language if patient else _guess_language(event))

    async def _process(self, session: AsyncSession, inbound_id: int, event: InboundEvent,
                       now: datetime) -> tuple[str, int]:
        sender = await self._identify(session, event)
        if event.action is not None and event.action.startswith(reachability.MEMBER):
            # Telegram membership (blocked, unblocked): a change of reachability, no reply.
            replies: list[Reply] = []
            outcome = await reachability.chat_member(session, sender.patient, event.action,
                                                     now=now, channel=event.channel)
            if sender.patient is None and sender.staff is None \
                    and event.action == reachability.UNBLOCKED:
                replies = [Reply("chat.link_send_code")]  # a stranger followed us: welcome
        elif sender.staff is not None:
            outcome, replies = await self._staff(session, sender.staff, event, now)
        elif sender.patient is not None:
            outcome, replies = await self._patient(session, sender.patient, event, inbound_id,
                                                   now)
        else:
            outcome, replies = await self._stranger(session, event, now)
            if outcome == f"link_{linking.LinkOutcome.LINKED}":
                sender = await self._identify(session, event)  # answer in their language
            elif outcome == "unknown":
                urgent = await self._urgent_stranger(session, event, now)
                if urgent is not None:
                    outcome, replies = URGENT_STRANGER, [urgent]
                    sender.language = catalogue.language_of(event.text)
        if sender.patient is not None:
            sender.language = sender.patient.language  # may have just changed (LANG)
        # One UPDATE for who sent it and what became of it (the row was claimed above).
        await session.execute(
            update(InboundMessage).where(InboundMessage.id == inbound_id)
            .values(patient_id=sender.patient.id if sender.patient else None,
                    staff_id=sender.staff.id if sender.staff else None, outcome=outcome)
            .execution_options(synchronize_session=False))
        if outcome == URGENT_STRANGER:
            # Not the once-a-day stranger reply: every urgent text gets the safety reply.
            count = await self._enqueue(session, inbound_id, event, sender, replies, now)
        elif event.channel == SMS and sender.patient is None and sender.staff is None:
            count = await self._answer_stranger_once(session, event, sender, now)
        elif event.channel != SMS and outcome in ("unknown", "member_unknown") and replies:
            # A flood of stranger messages costs one reply a day, not one each.
            count = int(await self._enqueue_one(
                session, f"unknown:{event.channel}:{event.sender}:{now.date().isoformat()}",
                event, sender, replies[0], now))
        else:
            count = await self._enqueue(session, inbound_id, event, sender, replies, now)
        return outcome, count

    async def _stranger(self, session: AsyncSession, event: InboundEvent,
                        now: datetime) -> tuple[str, list[Reply]]:
        """Someone we do not know: a link code, or one neutral answer and no study data."""
        command = _command(event.text.strip())
        if event.channel == TELEGRAM and command and command[0] == "start" and command[1]:
            return await self._link(session, event, command[1], now)
        if event.channel == TELEGRAM:
            return "unknown", [Reply("chat.link_needed")]
        if _contact_channel(event.channel):
            # A QR code's scene (the adapter's `link:CODE`), or the code typed.
            if event.action is not None and event.action.startswith(LINK):
                return await self._link(session, event, event.action[len(LINK):], now)
            code = _code_like(event.text) if event.action is None else None
            if code is not None:
                return await self._link(session, event, code, now)
            return "unknown", [Reply("chat.link_send_code")]
        return "unknown", [Reply("common.unknown_sender")]

    async def _urgent_stranger(self, session: AsyncSession, event: InboundEvent,
                               now: datetime) -> Reply | None:
        """A stranger's text that is an emergency or needs the study team today: alert the
        site it was written to (study.unregistered); the safety reply, or None."""
        if event.action is not None or _command(event.text.strip()) is not None:
            return None
        who = event.sender if event.channel == SMS else f"{event.channel}:{event.sender}"
        written_to = str(event.payload.get("to") or "") if event.channel == SMS else ""
        return await unregistered.receive(session, self.protocol, sender=who,
                                          written_to=written_to, text=event.text, now=now)

    async def _link(self, session: AsyncSession, event: InboundEvent, code: str,
                    now: datetime) -> tuple[str, list[Reply]]:
        if _contact_channel(event.channel):
            result = await linking.link_address(session, self.protocol, channel=event.channel,
                                                address=event.sender, code=code, now=now)
        else:
            result = await linking.link_chat(session, self.protocol,
                                             chat_id=int(event.sender), code=code, now=now)
        message = {linking.LinkOutcome.LINKED: "chat.link_ok",
                   linking.LinkOutcome.ALREADY: "chat.link_already",
                   linking.LinkOutcome.REFUSED: "chat.link_failed",
                   linking.LinkOutcome.LIMITED: "chat.link_limited"}[result.outcome]
        return f"link_{result.outcome}", [Reply(message)]

    async def _patient(self, session: AsyncSession, patient: Patient, event: InboundEvent,
                       inbound_id: int, now: datetime) -> tuple[str, list[Reply]]:
        if event.channel == TELEGRAM:
            await reachability.heard_from(session, patient, now=now)
        elif (point := contact_point(patient, event.channel)) is not None:
            await reachability.contact_heard_from(session, patient, point, now=now)
        if event.action:
            return await self._patient_action(session, patient, event.action, inbound_id, now)
        if event.media and not event.payload.get("edited"):
            # A photo, a voice note...: its reference stored, a routine report for staff, the
            # caption triaged as text (an edit says nothing new about the file: text only).
            from study import media

            return await media.receive(session, self.protocol, patient, event.media,
                                       event.text, now=now, inbound_id=inbound_id)
        text = event.text.strip()
        keyword = event.keyword or parse_keyword(text)
        command = _command(text)
        if command is not None:
            name, args = command
            if name == "start" and args:
                return await self._link(session, event, args, now)
            keyword = PATIENT_COMMANDS.get(name) or parse_keyword(name) or Keyword.HELP
        if keyword in (Keyword.STOP, Keyword.START, Keyword.HELP):
            return await self._opt(session, patient, keyword, event, now)
        if command is None and await questionnaire.is_active(session, patient, now):
            return "questionnaire", await questionnaire.answer(
                session, self.protocol, patient, text, now=now, inbound_id=inbound_id)
        language = _language_choice(text)
        if language is not None:
            return await self._set_language(session, patient, language, now)
        if keyword is Keyword.LANGUAGE:
            return "language_ask", [_language_question()]
        if keyword in KEYWORD_ACTIONS:  # a typed answer is the button it names
            return await self._patient_action(session, patient, KEYWORD_ACTIONS[keyword],
                                              inbound_id, now)
        if not text:
            return "not_text", [Reply("chat.text_only")]
        if intents.is_acknowledgement(text):  # "好的 谢谢", "ok thanks": not a report
            return "acknowledgement", [Reply("chat.acknowledged")]
        if intents.says_dose_not_taken(text):
            return await self._dose_not_taken(session, patient, text, inbound_id, now)
        from study.reports import receive_report

        return "report", await receive_report(session, self.protocol, patient, text, now=now,
                                              inbound_id=inbound_id)

    async def _dose_not_taken(self, session: AsyncSession, patient: Patient, text: str,
                              inbound_id: int, now: datetime) -> tuple[str, list[Reply]]:
        """Today's dose not taken, in words: the missed-dose flow, as the MISSED keyword is; words
        that also say something urgent ("and I have a fever") are a report as well, paged."""
        from study.reports import receive_report
        from trial.triage import Report, triage

        outcome, replies = await self._dose(session, patient, DOSE_ANSWERS[Keyword.MISSED], None,
                                            now)
        assessment = triage(Report(text), self.protocol.triage)
        symptoms = [r for r in assessment.reasons if r.code not in _DOSE_ONLY_REASONS]
        if not assessment.tier.is_urgent and not symptoms:
            return outcome, replies
        report = await receive_report(session, self.protocol, patient, text, now=now,
                                      inbound_id=inbound_id)
        return "report", [*report, *replies]

    async def _patient_action(self, session: AsyncSession, patient: Patient, action: str,
                              inbound_id: int, now: datetime) -> tuple[str, list[Reply]]:
        pressed = parse_action(action)
        if isinstance(pressed, DoseAction):
            # `dose:taken` without an id (a channel's menu): today's dose, as the keyword is.
            if pressed.answer in DOSE_ANSWERS.values():
                return await self._dose(session, patient, pressed.answer, pressed.dose_id, now)
        elif isinstance(pressed, QuestionAction):
            return "questionnaire", await questionnaire.answer(
                session, self.protocol, patient, action, now=now, inbound_id=inbound_id)
        elif pressed == REPORT_START:
            return await self._start_questionnaire(session, patient, now)
        elif isinstance(pressed, LanguageAction) and pressed.code in LANGUAGES:
            return await self._set_language(session, patient, pressed.code, now)
        elif isinstance(pressed, HelpAction):
            return str(Keyword.HELP), await optout.help_reply(session, patient)
        elif action.startswith(LINK):  # a linked patient scanned a code (again)
            return f"link_{linking.LinkOutcome.ALREADY}", [Reply("chat.link_already")]
        log.info("patient %s pressed an unknown action %r", patient.subject_id, action)
        return "unknown_action", await optout.help_reply(session, patient)

    async def _opt(self, session: AsyncSession, patient: Patient, keyword: Keyword,
                   event: InboundEvent, now: datetime) -> tuple[str, list[Reply]]:
        if keyword is Keyword.STOP:
            replies = await optout.opt_out(session, patient, channel=event.channel, now=now,
                                           source=event.text.strip()[:20] or "OptOutType")
        elif keyword is Keyword.START:
            replies = await optout.opt_in(session, patient, now=now, source=event.channel)
        else:
            replies = await optout.help_reply(session, patient)
        if event.answered_by_provider and keyword is not Keyword.HELP:
            # The provider answered its own keywords already (Twilio; it blocks us after STOP).
            replies = []
        return str(keyword), replies

    async def _dose(self, session: AsyncSession, patient: Patient, answer: str,
                    dose_id: int | None, now: datetime) -> tuple[str, list[Reply]]:
        from study.dose_answers import answer_dose

        reply = await answer_dose(session, self.protocol, patient, answer, now=now,
                                  dose_id=dose_id)
        return f"dose_{answer}", [reply]

    async def _start_questionnaire(self, session: AsyncSession, patient: Patient,
                                   now: datetime) -> tuple[str, list[Reply]]:
        return "report_start", await questionnaire.start(session, self.protocol, patient,
                                                         now=now)

    async def _set_language(self, session: AsyncSession, patient: Patient, language: str,
                            now: datetime) -> tuple[str, list[Reply]]:
        audit.change(session, patient, at=now, actor=Actor.patient(patient.subject_id),
                     reason="patient chose the language", language=language)
        return "language_set", [Reply("chat.language_set")]

    async def _staff(self, session: AsyncSession, staff: Staff, event: InboundEvent,
                     now: datetime) -> tuple[str, list[Reply]]:
        if event.channel == SMS:
            return await staff_sms.handle(session, self.protocol, staff, event.text, now=now)
        if event.action:
            found = self.staff_commands.find_action(event.action)
            if found is None:
                return "staff_unknown_action", [Reply("chat.staff_unknown_command")]
            pressed, action = found
            return "staff_action", await pressed(session, self.protocol, staff, action, now=now)
        command = _command(event.text.strip())
        if command is None:
            return "staff_text", await self.staff_commands.help(
                session, self.protocol, staff, "", now=now)
        name, args = command
        handler = self.staff_commands.get(name)
        if handler is None:
            return "staff_unknown_command", [Reply("chat.staff_unknown_command")]
        return f"staff_{name}"[:32], await handler(session, self.protocol, staff, args, now=now)

    # -- replies -----------------------------------------------------------------------------
    async def _enqueue(self, session: AsyncSession, inbound_id: int, event: InboundEvent,
                       sender: _Sender, replies: list[Reply], now: datetime) -> int:
        count = 0
        for n, reply in enumerate(replies):
            key = f"reply:{inbound_id}:{n}"
            if await self._enqueue_one(session, key, event, sender, reply, now):
                count += 1
        return count

    async def _answer_stranger_once(self, session: AsyncSession, event: InboundEvent,
                                    sender: _Sender, now: datetime) -> int:
        # SMS pumping: an unknown number gets one answer, ever; never more from us.
        reply = Reply("common.unknown_sender")
        return int(await self._enqueue_one(session, f"unknown:sms:{event.sender}", event,
                                           sender, reply, now))

    async def _enqueue_one(self, session: AsyncSession, key: str, event: InboundEvent,
                           sender: _Sender, reply: Reply, now: datetime) -> bool:
        if reply.attachment is not None and reply.attachment.channel != event.channel:
            # A file id means something only to the channel it came from: say where it is.
            origin = reply.attachment.channel
            with contextlib.suppress(catalogue.MissingMessageError):
                origin = catalogue.render(f"delivery.channel_{origin}", sender.language)
            reply = Reply("media.staff_elsewhere", {**reply.params, "channel": origin})
        image = reply.attachment.attachment() if reply.attachment is not None else None
        recipient = outgoing.Recipient(
            event.channel, event.address, sender.language,
            patient_id=sender.patient.id if sender.patient else None,
            staff_id=sender.staff.id if sender.staff else None)
        return await outgoing.queue(session, recipient, reply, key=key, now=now,
                                    image=image, protocol=self.protocol) is not None


def _language_question() -> Reply:
    return Reply("chat.language_ask", choices=(
        # By SMS the words themselves, in the reader's language (中文 / 英文): no number that
        # could be read as a dose answer (messages.sms.SMS_CHOICES["language"]).
        Choice("chat.language_zh", LanguageAction("zh").pack(), "chat.language_zh_word"),
        Choice("chat.language_en", LanguageAction("en").pack(), "chat.language_en_word")))

"""Telegram: the send adapter (aiogram Bot), what an update means to the conversation core
(`incoming`, `TelegramInbox`), and a polling loop that never stops hearing.

aiogram's own `start_polling` confirms a batch through the next `getUpdates` offset while the
handlers may still be running (`handle_as_tasks`), so a crash would lose those updates. Here the
offset moves past an update only once it is stored (committed as an inbound row, or stored raw
when it cannot be parsed); a stored message is then handled by a worker, or after a crash at
start-up (`Conversation.handle_pending`), and the unique `(channel, external_id)` makes a replay
harmless. Chats are handled side by side, each in order, the chats of patients and staff before
strangers'; a failing `getUpdates` (an HTML error page, a network error, anything) is retried
with a capped backoff for as long as the process runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiogram import Bot, Dispatcher, Router
from aiogram.client.default import DefaultBotProperties
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import (
    ClientDecodeError,
    TelegramAPIError,
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramNetworkError,
    TelegramNotFound,
    TelegramRetryAfter,
)
from aiogram.types import (
    BufferedInputFile,
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
    Update,
)
from pydantic import ValidationError
from sqlalchemy import select

from bot import inbox
from bot.channels.telegram.session import BotSession
from bot.conversation import TELEGRAM, Conversation, InboundEvent
from messages import actions, catalogue
from messages.actions import DoseAction, LanguageAction
from messages.channel import (
    Choice,
    Media,
    OutgoingMessage,
    PermanentSendError,
    SendResult,
    TransientSendError,
    attached_media,
)
from storage.models import Patient, Staff
from study import outgoing, reachability
from trial.clock import Clock

log = logging.getLogger(__name__)

CAPTION_LIMIT = 1024
TEXT_LIMIT = 4096  # Telegram refuses a longer message ("message is too long")
# my_chat_member: a patient blocking or unblocking the bot; edited_message: a new statement.
UPDATE_TYPES = ["message", "edited_message", "callback_query", "my_chat_member"]
GROUP_CHATS = ("group", "supergroup")


# -- button actions: the callback data is the action string (messages.actions) ---------------
def callback_data(action: str) -> str:
    """The callback data of an action; ValueError if it is not one or over 64 bytes (ids out
    of range are refused here, before any query)."""
    pressed = actions.parse(action)
    if pressed is None:
        raise ValueError(f"not a button action: {action!r}")
    return pressed.pack()


def action_of(data: str | None) -> str | None:
    """The action a pressed button carries, or None when it is not one of ours."""
    if not data:
        return None
    try:
        return callback_data(data)
    except (ValueError, TypeError):
        return None


def keyboard(choices: tuple[Choice, ...]) -> InlineKeyboardMarkup | None:
    """Choices as inline buttons, two per row."""
    if not choices:
        return None
    # Built directly: aiogram's InlineKeyboardBuilder deep-copies every button several times
    # (about 0.2 ms a keyboard, a fifth of a reminder's send cost in a fan-out).
    buttons = [InlineKeyboardButton(text=choice.label, callback_data=callback_data(choice.action))
               for choice in choices]
    return InlineKeyboardMarkup(inline_keyboard=[buttons[i:i + 2]
                                                 for i in range(0, len(buttons), 2)])


def fitted(text: str) -> str:
    """A text Telegram takes (texts are built to fit; this is the last guard, so an over-long
    text is never refused up a whole chain)."""
    return catalogue.shortened(text, TEXT_LIMIT)


def make_bot(token: str, api_url: str) -> Bot:
    """An aiogram Bot talking to `api_url` (the real Bot API, a local server, or a fake)."""
    session = BotSession(api=TelegramAPIServer.from_base(api_url))
    # Plain text: catalogue texts are not HTML-escaped, so no parse mode.
    return Bot(token, session=session,
               default=DefaultBotProperties(link_preview_is_disabled=True))


# -- sending -------------------------------------------------------------------------------
class TelegramChannel:
    """Sends outbox messages with the Bot API, mapping its errors to the channel contract."""

    name = TELEGRAM

    def __init__(self, bot: Bot) -> None:
        self.bot = bot

    async def send(self, message: OutgoingMessage) -> SendResult:
        """Send text (with buttons) or a picture with its caption."""
        try:
            chat_id = int(message.address)
            markup = keyboard(message.choices)
        except ValueError as exc:
            raise PermanentSendError(f"cannot address Telegram message: {exc}") from None
        try:
            media = attached_media(message.image)
            if media is not None:
                sent = await self._resend(chat_id, media, message.text, markup)
            elif message.image is not None:
                photo = BufferedInputFile(message.image, filename="chart.png")
                fits = len(message.text) <= CAPTION_LIMIT
                sent = await self.bot.send_photo(chat_id, photo,
                                                 caption=message.text if fits else None,
                                                 reply_markup=markup if fits else None)
                if not fits:
                    sent = await self.bot.send_message(chat_id, fitted(message.text),
                                                       reply_markup=markup)
            else:
                sent = await self.bot.send_message(chat_id, fitted(message.text),
                                                   reply_markup=markup)
        except TelegramRetryAfter as exc:
            raise TransientSendError("telegram flood control", retry_after=exc.retry_after
                                     ) from None
        except TelegramForbiddenError as exc:
            raise PermanentSendError(f"telegram 403: {exc.message}", unreachable=True,
                                     code="403") from None
        except (TelegramBadRequest, TelegramNotFound) as exc:
            unreachable = "chat not found" in exc.message.lower()
            raise PermanentSendError(f"telegram rejected: {exc.message}",
                                     unreachable=unreachable, code="400") from None
        except TelegramNetworkError as exc:
            # A timeout may come after Telegram accepted the message.
            raise TransientSendError(f"telegram network: {exc.message}",
                                     maybe_sent="timeout" in exc.message.lower()) from None
        except TelegramAPIError as exc:  # 5xx, restarts, conflicts, a rejected token
            raise TransientSendError(f"telegram error: {exc.message}") from None
        return SendResult(provider_id=f"{chat_id}:{sent.message_id}", status="sent")

    async def _resend(self, chat_id: int, media: Media, text: str,
                      markup: InlineKeyboardMarkup | None) -> Message:
        """A file a patient sent, sent again by its file_id (Telegram keeps it; nothing is
        downloaded), the text as its caption where the kind takes one and it fits."""
        file_id = media.reference
        if media.kind == "location":
            latitude, _, longitude = file_id.partition(",")
            await self.bot.send_message(chat_id, fitted(text), reply_markup=markup)
            return await self.bot.send_location(chat_id, float(latitude), float(longitude))
        senders: dict[str, Callable[..., Awaitable[Message]]] = {
            "photo": self.bot.send_photo, "voice": self.bot.send_voice,
            "video": self.bot.send_video, "audio": self.bot.send_audio,
            "animation": self.bot.send_animation, "document": self.bot.send_document}
        send = senders.get(media.kind)
        if send is not None and len(text) <= CAPTION_LIMIT:
            return await send(chat_id, file_id, caption=text, reply_markup=markup)
        await self.bot.send_message(chat_id, fitted(text), reply_markup=markup)
        if send is not None:
            return await send(chat_id, file_id)
        if media.kind == "video_note":
            return await self.bot.send_video_note(chat_id, file_id)
        if media.kind == "sticker":
            return await self.bot.send_sticker(chat_id, file_id)
        return await self.bot.send_document(chat_id, file_id)


# -- receiving -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Incoming:
    """One update as the conversation sees it; `event` None: nothing to handle."""

    chat: str  # handled in order within a chat, side by side across chats
    event: InboundEvent | None
    group: bool = False  # from a group chat: kept, answered once a day, never a report
    callback: CallbackQuery | None = None


def media_of(message: Message) -> tuple[Media, ...]:
    """What a message carries besides text, as references (file_id; a place's coordinates)."""
    def item(kind: str, file: Any, **detail: Any) -> Media:
        values = {"file_unique_id": getattr(file, "file_unique_id", None),
                  "file_size": getattr(file, "file_size", None),
                  "duration": getattr(file, "duration", None),
                  "file_name": getattr(file, "file_name", None), **detail}
        return Media(kind, str(file.file_id), str(getattr(file, "mime_type", None) or ""),
                     {k: v for k, v in values.items() if v is not None}, TELEGRAM)

    if message.photo:
        largest = max(message.photo, key=lambda p: p.width * p.height)
        return (item("photo", largest, width=largest.width, height=largest.height),)
    if message.animation:  # Telegram sets `document` too: the animation is what was sent
        return (item("animation", message.animation),)
    for kind in ("voice", "video", "video_note", "audio", "document"):
        file = getattr(message, kind)
        if file is not None:
            return (item(kind, file),)
    if message.sticker:
        return (item("sticker", message.sticker, emoji=message.sticker.emoji),)
    place = message.location or (message.venue.location if message.venue else None)
    if place is not None:
        return (Media("location", f"{place.latitude},{place.longitude}", channel=TELEGRAM),)
    return ()


def _timestamp(value: Any) -> int:
    return int(value.timestamp()) if isinstance(value, datetime) else int(value or 0)


def incoming(update: Update, now: datetime) -> Incoming:
    """What an update says: a message (an edit is a new statement), a button, a block."""
    message = update.message or update.edited_message
    if message is not None:
        user = message.from_user
        chat = message.chat
        if user is None or user.is_bot or chat.type not in ("private", *GROUP_CHATS):
            return Incoming(str(chat.id), None)
        edited = update.edited_message is not None
        payload: dict[str, Any] = {"chat_id": chat.id, "message_id": message.message_id,
                                   "language_code": user.language_code or ""}
        # An edit keeps the message's id: its own key, so it is stored and triaged again.
        external_id = (f"edit:{chat.id}:{message.message_id}:{_timestamp(message.edit_date)}"
                       if edited else str(update.update_id))
        if edited:
            payload["edited"] = True
        if chat.type in GROUP_CHATS:
            payload["chat_type"] = chat.type
        event = InboundEvent(channel=TELEGRAM, external_id=external_id, sender=str(user.id),
                             text=message.text or message.caption or "", action=None,
                             received_at=now, payload=payload, media=media_of(message))
        return Incoming(str(chat.id), event, group=chat.type in GROUP_CHATS)
    query = update.callback_query
    if query is not None:
        chat_id = query.message.chat.id if query.message else query.from_user.id
        event = InboundEvent(
            channel=TELEGRAM, external_id=str(update.update_id),
            sender=str(query.from_user.id), text="",
            action=action_of(query.data) or "invalid", received_at=now,
            payload={"chat_id": chat_id, "callback_query_id": query.id,
                     "language_code": query.from_user.language_code or ""})
        return Incoming(str(chat_id), event, callback=query)
    member = update.my_chat_member
    if member is not None and member.chat.type == "private":
        status = member.new_chat_member.status
        action = {"kicked": reachability.BLOCKED, "member": reachability.UNBLOCKED}.get(
            str(getattr(status, "value", status)))
        if action is None:
            return Incoming(str(member.chat.id), None)
        event = InboundEvent(channel=TELEGRAM, external_id=str(update.update_id),
                             sender=str(member.from_user.id), text="", action=action,
                             received_at=now, payload={"chat_id": member.chat.id})
        return Incoming(str(member.chat.id), event)
    return Incoming(f"update:{update.update_id}", None)


def _language(event: InboundEvent) -> str:
    return "en" if str(event.payload.get("language_code") or "").startswith("en") else "zh"


class TelegramInbox:
    """Stores and handles updates for the poller and the webhook alike."""

    def __init__(self, conversation: Conversation, clock: Clock) -> None:
        self.conversation = conversation
        self.clock = clock

    async def handle(self, bot: Bot, update: Update) -> None:
        """Store and handle one update to the end; raises only while the database is down."""
        item = incoming(update, self.clock.now())
        if item.group and item.event is not None:
            await self.store_groups([item.event])
        await self.handle_incoming(bot, item)

    async def handle_incoming(self, bot: Bot, item: Incoming) -> None:
        """Handle what an update says (its group message already stored)."""
        if item.event is None:
            return
        if item.group:
            await self._answer_group(item.event)
            return
        handled = await inbox.handle_firmly(self.conversation, item.event)
        if item.callback is not None:
            await _follow_up(bot, item.callback, item.event.action,
                             handled is not None and not handled.duplicate)

    async def store(self, items: Iterable[Incoming]) -> None:
        """Store every event of a batch (one transaction; one at a time if that fails, an
        event that cannot be stored then stored raw as failed)."""
        items = [i for i in items if i.event is not None]
        groups = [i.event for i in items if i.group and i.event is not None]
        events = [i.event for i in items if not i.group and i.event is not None]
        if groups:
            await self.store_groups(groups)
        try:
            await self.conversation.store_all(events)
        except Exception as exc:
            if inbox.unwell(exc) or len(events) <= 1:
                if inbox.unwell(exc):
                    raise
                log.error("telegram update could not be stored", exc_info=True)
                for event in events:
                    await inbox.mark_failed(self.conversation.db, event, now=self.clock.now())
                return
            for event in events:
                await self.store([Incoming("", event)])

    async def store_groups(self, events: list[InboundEvent]) -> None:
        """Group messages are kept for the record, handled: nothing in a group is a report."""
        for event in events:
            await inbox.store_raw(self.conversation.db, channel=TELEGRAM,
                                  external_id=event.external_id, raw=event.payload,
                                  outcome="group", now=event.received_at, sender=event.sender,
                                  text=event.text)

    async def store_raw(self, update_id: int | None, raw: Any) -> None:
        """An update aiogram cannot parse, stored as it came (never handled, never lost)."""
        external_id = (str(update_id) if update_id is not None else
                       "raw:" + hashlib.sha256(repr(raw).encode()).hexdigest()[:40])
        log.warning("telegram update %s cannot be parsed; stored raw", external_id)
        await inbox.store_raw(self.conversation.db, channel=TELEGRAM, external_id=external_id,
                              raw=raw, outcome=inbox.UNPARSABLE, now=self.clock.now(),
                              sender=_raw_sender(raw))

    async def known(self, items: Iterable[Incoming]) -> set[str]:
        """The senders among `items` who are patients or staff (their chats go first)."""
        ids = {int(i.event.sender) for i in items
               if i.event is not None and i.event.sender.lstrip("-").isdigit()
               and abs(int(i.event.sender)) < 2**63}
        if not ids:
            return set()
        async with self.conversation.db.read() as session:
            patients = (await session.execute(select(Patient.telegram_id).where(
                Patient.telegram_id.in_(ids)))).scalars().all()
            staff = (await session.execute(select(Staff.telegram_id).where(
                Staff.telegram_id.in_(ids)))).scalars().all()
        return {str(i) for i in (*patients, *staff)}

    async def _answer_group(self, event: InboundEvent) -> None:
        now = self.clock.now()
        chat_id = str(event.payload.get("chat_id"))
        async with self.conversation.db.write() as session:
            await outgoing.queue(session, outgoing.Recipient(TELEGRAM, chat_id, _language(event)),
                                 outgoing.Reply("chat.group_private"),
                                 key=f"group:{chat_id}:{now.date().isoformat()}", now=now)


def _raw_sender(raw: Any) -> str:
    """The sender of an update that could not be parsed, where it can be seen."""
    if not isinstance(raw, dict):
        return ""
    for key in ("message", "edited_message", "callback_query", "my_chat_member"):
        part = raw.get(key)
        if isinstance(part, dict) and isinstance(part.get("from"), dict):
            return str(part["from"].get("id", ""))[:64]
    return ""


async def _follow_up(bot: Bot, query: CallbackQuery, action: str | None, new: bool) -> None:
    # Committed: now the cosmetic parts, which must not make the update be retried.
    try:
        await bot.answer_callback_query(query.id)
        if (new and isinstance(actions.parse(action), DoseAction | LanguageAction)
                and query.message is not None):
            await bot.edit_message_reply_markup(chat_id=query.message.chat.id,
                                                message_id=query.message.message_id,
                                                reply_markup=None)
    except TelegramAPIError as exc:
        log.info("button follow-up failed: %s", exc.message)


def build_router(telegram_inbox: TelegramInbox) -> Router:
    """Every update type we ask for, handed to the inbox (webhook mode feeds it)."""
    router = Router(name="engage")

    async def on_update(_event: Any, event_update: Update, bot: Bot) -> None:
        await telegram_inbox.handle(bot, event_update)

    for observer in (router.message, router.edited_message, router.callback_query,
                     router.my_chat_member):
        observer.register(on_update)
    return router


def build_dispatcher(conversation: Conversation, clock: Clock) -> Dispatcher:
    """An aiogram Dispatcher whose only router feeds the conversation; `dispatcher["inbox"]`
    is the TelegramInbox (the poller and the webhook's raw store use it)."""
    telegram_inbox = TelegramInbox(conversation, clock)
    dispatcher = Dispatcher(inbox=telegram_inbox)
    dispatcher.include_router(build_router(telegram_inbox))
    return dispatcher


async def feed(dispatcher: Dispatcher, bot: Bot, update: Update) -> Any:
    """Handle one update to the end (the commit), raising if it could not be handled."""
    return await dispatcher.feed_update(bot, update)


Job = Callable[[], Awaitable[None]]


class ChatLanes:
    """Work per chat in arrival order, up to `concurrency` chats side by side, the chats of
    people we know before strangers': a flood of strangers cannot delay a patient's report."""

    def __init__(self, concurrency: int = 8) -> None:
        self.concurrency = concurrency
        self._work: dict[str, deque[Job]] = {}
        self._ready: tuple[deque[str], deque[str]] = (deque(), deque())  # known, strangers
        self._signal = asyncio.Semaphore(0)
        self._idle = asyncio.Event()
        self._idle.set()
        self._closing = False
        self._workers: list[asyncio.Task[None]] = []

    def put(self, chat: str, job: Job, *, known: bool) -> None:
        """Queue a job behind the chat's earlier ones."""
        if not self._workers:
            self._workers = [asyncio.create_task(self._worker())
                             for _ in range(self.concurrency)]
        jobs = self._work.get(chat)
        if jobs is not None:
            jobs.append(job)
            return
        self._work[chat] = deque([job])
        self._ready[0 if known else 1].append(chat)
        self._idle.clear()
        self._signal.release()

    def has(self, chat: str) -> bool:
        """Whether a chat has work queued or running here."""
        return chat in self._work

    async def idle(self) -> None:
        """Wait until every queued job is done."""
        await self._idle.wait()

    async def close(self) -> None:
        """Finish the jobs running now; the queued ones stay stored for the next start."""
        self._closing = True
        for _ in self._workers:
            self._signal.release()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []

    async def _worker(self) -> None:
        while True:
            await self._signal.acquire()
            if self._closing:
                return
            chat = self._ready[0].popleft() if self._ready[0] else self._ready[1].popleft()
            jobs = self._work[chat]
            while jobs and not self._closing:
                try:
                    await jobs[0]()
                except Exception:  # a job handles its own failures; never lose the worker
                    log.exception("telegram chat %s: job failed", chat)
                jobs.popleft()
            del self._work[chat]
            if not self._work:
                self._idle.set()


Fetched = tuple[int | None, Update | None, Any]  # update_id, the parsed update, or its raw JSON


class TelegramPoller:
    """`getUpdates` long polling: retried forever on any failure, an update confirmed once
    stored, chats handled side by side; `completed_at` (monotonic) feeds /healthz."""

    def __init__(self, bot: Bot, dispatcher: Dispatcher, *, timeout: int = 25,
                 retry_seconds: float = 1.0, max_retry_seconds: float = 30.0,
                 concurrency: int = 8, stranger_concurrency: int = 2,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.bot = bot
        self.dispatcher = dispatcher
        self.inbox: TelegramInbox = dispatcher["inbox"]
        self.timeout = timeout
        self.retry_seconds = retry_seconds
        self.max_retry_seconds = max_retry_seconds
        self.monotonic = monotonic
        self.lanes = ChatLanes(concurrency)
        # Strangers get few workers of their own: a flood of them cannot take the database's
        # write turn from a patient's report.
        self.stranger_lanes = ChatLanes(stranger_concurrency)
        self.offset: int | None = None
        self.started_at = monotonic()
        self.completed_at: float | None = None  # the last getUpdates that answered
        self._delay = retry_seconds
        self._stop = asyncio.Event()

    @property
    def alive(self) -> bool:
        """Whether the last getUpdates answered."""
        return self.completed_at is not None and self._delay == self.retry_seconds

    def stale(self, seconds: float) -> bool:
        """No getUpdates has completed for more than `seconds`."""
        return self.monotonic() - (self.completed_at or self.started_at) > seconds

    async def run(self, stop: asyncio.Event) -> None:
        """Poll until `stop` is set; the updates being handled are finished first."""
        self._stop = stop
        self.started_at = self.monotonic()
        self.lanes = ChatLanes(self.lanes.concurrency)
        self.stranger_lanes = ChatLanes(self.stranger_lanes.concurrency)
        stopping = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                try:
                    await self.bot.delete_webhook(drop_pending_updates=False)
                    break
                except Exception as exc:
                    await self._failed("deleteWebhook", exc)
            while not stop.is_set():
                fetch = asyncio.ensure_future(self._fetch())
                await asyncio.wait({fetch, stopping}, return_when=asyncio.FIRST_COMPLETED)
                if not fetch.done():
                    # Nothing fetched is lost: an update counts only once the offset passes it.
                    fetch.cancel()
                    await asyncio.gather(fetch, return_exceptions=True)
                    return
                try:
                    batch = fetch.result()
                except Exception as exc:
                    await self._failed("getUpdates", exc)
                    continue
                self.completed_at, self._delay = self.monotonic(), self.retry_seconds
                try:
                    await self._take(batch)
                except Exception as exc:  # the database is down: fetched again later
                    await self._failed("storing updates", exc)
        finally:
            stopping.cancel()
            await asyncio.gather(self.lanes.close(), self.stranger_lanes.close())

    async def idle(self) -> None:
        """Wait until every update taken so far is handled (for tests and shutdown)."""
        await self.lanes.idle()
        await self.stranger_lanes.idle()

    async def _failed(self, what: str, exc: BaseException) -> None:
        detail = getattr(exc, "message", None) or str(exc) or type(exc).__name__
        log.warning("%s failed (%s: %s); again in %.2f s", what, type(exc).__name__,
                    str(detail)[:200], self._delay)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), timeout=self._delay)
        self._delay = min(self._delay * 2, self.max_retry_seconds)

    async def _fetch(self) -> list[Fetched]:
        try:
            updates = await self.bot.get_updates(
                offset=self.offset, timeout=self.timeout, allowed_updates=UPDATE_TYPES,
                request_timeout=self.timeout + 10)
        except ClientDecodeError as exc:
            # JSON that aiogram's models reject (aiogram #1587): each update on its own, so one
            # bad update is stored raw and the rest of the batch is handled.
            data = exc.data
            if not (isinstance(data, dict) and data.get("ok") is True
                    and isinstance(data.get("result"), list)):
                raise
            return [self._parse(raw) for raw in data["result"]]
        return [(u.update_id, u, None) for u in updates]

    def _parse(self, raw: Any) -> Fetched:
        update_id = raw.get("update_id") if isinstance(raw, dict) else None
        update_id = update_id if isinstance(update_id, int) else None
        try:
            return update_id, Update.model_validate(raw, context={"bot": self.bot}), None
        except ValidationError:
            return update_id, None, raw

    async def _take(self, batch: list[Fetched]) -> None:
        """Store the batch, confirm it (the offset), and queue its handling per chat."""
        now = self.inbox.clock.now()
        items: list[tuple[int | None, Incoming]] = []
        for update_id, update, raw in batch:
            if update_id is not None and self.offset is not None and update_id < self.offset:
                continue  # taken already
            if update is None:
                await self.inbox.store_raw(update_id, raw)
            else:
                items.append((update_id, incoming(update, now)))
        await self.inbox.store([item for _, item in items])
        known = await self.inbox.known(item for _, item in items)
        for _, item in items:
            if item.event is None:
                continue
            # A chat stays in its lane while it has work there: its order is kept.
            stranger = (item.event.sender not in known or self.stranger_lanes.has(item.chat)
                        ) and not self.lanes.has(item.chat)
            lanes = self.stranger_lanes if stranger else self.lanes
            lanes.put(item.chat, self._job(item), known=not stranger)
        ids = [update_id for update_id, _, _ in batch if update_id is not None]
        if ids:
            self.offset = max(max(ids) + 1, self.offset or 0)

    def _job(self, item: Incoming) -> Job:
        async def job() -> None:
            delay = self.retry_seconds
            while True:
                try:
                    await self.inbox.handle_incoming(self.bot, item)
                    return
                except Exception as exc:
                    if not inbox.unwell(exc) or self._stop.is_set():
                        # Stored: handled at the next start-up (or by the sweep).
                        log.exception("telegram update not handled now; it stays stored")
                        return
                    log.warning("database unwell; telegram update retried in %.1f s", delay)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stop.wait(), timeout=delay)
                    delay = min(delay * 2, self.max_retry_seconds)
        return job

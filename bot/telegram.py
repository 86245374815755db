"""Telegram: the send adapter (aiogram Bot), the router feeding the conversation core, and a
polling loop that confirms an update only after its handling is committed.

aiogram's own `start_polling` confirms a batch through the next `getUpdates` offset while the
handlers may still be running (`handle_as_tasks`), so a crash would lose those updates. Here the
offset moves past an update only once `Conversation.handle` has returned, i.e. after the
inbound row and its replies are committed; a crash re-fetches the update and the unique
`(channel, update_id)` makes the replay harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from aiogram import Bot, Dispatcher, F, Router
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import (
    TelegramAPIError,
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramNetworkError,
    TelegramNotFound,
    TelegramRetryAfter,
)
from aiogram.filters.callback_data import CallbackData
from aiogram.types import (
    BufferedInputFile,
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
    Update,
)

from bot.channels import (
    Choice,
    OutgoingMessage,
    PermanentSendError,
    SendResult,
    TransientSendError,
)
from bot.conversation import TELEGRAM, Conversation, InboundEvent
from engage.clock import Clock

log = logging.getLogger(__name__)

CAPTION_LIMIT = 1024
UPDATE_TYPES = ["message", "callback_query"]


# -- button actions as CallbackData factories (each packs to exactly the action string) ------
class DoseButton(CallbackData, prefix="dose"):
    answer: str
    dose_id: int


class QuestionButton(CallbackData, prefix="q"):
    step: str
    answer: str


class ReportButton(CallbackData, prefix="report"):
    verb: str


class AlertButton(CallbackData, prefix="alert"):
    verb: str
    alert_id: int


class PageButton(CallbackData, prefix="page"):
    command: str
    n: int


class LanguageButton(CallbackData, prefix="lang"):
    code: str


BUTTONS: dict[str, type[CallbackData]] = {
    b.__prefix__: b for b in (DoseButton, QuestionButton, ReportButton, AlertButton, PageButton,
                              LanguageButton)
}


def callback_data(action: str) -> str:
    """The packed callback data of an action; ValueError if malformed or over 64 bytes."""
    factory = BUTTONS.get(action.split(":", 1)[0])
    if factory is None:
        raise ValueError(f"no button factory for action {action!r}")
    return factory.unpack(action).pack()


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


def make_bot(token: str, api_url: str) -> Bot:
    """An aiogram Bot talking to `api_url` (the real Bot API, a local server, or a fake)."""
    session = AiohttpSession(api=TelegramAPIServer.from_base(api_url))
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
            if message.image is not None:
                photo = BufferedInputFile(message.image, filename="chart.png")
                fits = len(message.text) <= CAPTION_LIMIT
                sent = await self.bot.send_photo(chat_id, photo,
                                                 caption=message.text if fits else None,
                                                 reply_markup=markup if fits else None)
                if not fits:
                    sent = await self.bot.send_message(chat_id, message.text,
                                                       reply_markup=markup)
            else:
                sent = await self.bot.send_message(chat_id, message.text, reply_markup=markup)
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


# -- receiving -----------------------------------------------------------------------------
def build_router(conversation: Conversation, clock: Clock) -> Router:
    """Private-chat messages and button presses, all handed to the conversation core."""
    router = Router(name="engage")

    @router.message(F.chat.type == "private")
    async def on_message(message: Message, event_update: Update) -> None:
        user = message.from_user
        if user is None or user.is_bot:
            return
        await conversation.handle(InboundEvent(
            channel=TELEGRAM, external_id=str(event_update.update_id), sender=str(user.id),
            text=message.text or message.caption or "", action=None, received_at=clock.now(),
            payload={"chat_id": message.chat.id, "message_id": message.message_id,
                     "language_code": user.language_code or ""}))

    @router.callback_query()
    async def on_button(query: CallbackQuery, event_update: Update, bot: Bot) -> None:
        action = action_of(query.data)
        chat_id = query.message.chat.id if query.message else query.from_user.id
        handled = await conversation.handle(InboundEvent(
            channel=TELEGRAM, external_id=str(event_update.update_id),
            sender=str(query.from_user.id), text="", action=action or "invalid",
            received_at=clock.now(),
            payload={"chat_id": chat_id, "callback_query_id": query.id,
                     "language_code": query.from_user.language_code or ""}))
        # Committed: now the cosmetic parts, which must not make the update be retried.
        try:
            await query.answer()
            if (not handled.duplicate and action and action.startswith(("dose:", "lang:"))
                    and query.message is not None):
                await bot.edit_message_reply_markup(chat_id=chat_id,
                                                    message_id=query.message.message_id,
                                                    reply_markup=None)
        except TelegramAPIError as exc:
            log.info("button follow-up failed: %s", exc.message)

    return router


def build_dispatcher(conversation: Conversation, clock: Clock) -> Dispatcher:
    """An aiogram Dispatcher whose only router is the conversation's."""
    dispatcher = Dispatcher()
    dispatcher.include_router(build_router(conversation, clock))
    return dispatcher


async def feed(dispatcher: Dispatcher, bot: Bot, update: Update) -> Any:
    """Handle one update to the end (the commit), raising if it could not be handled."""
    return await dispatcher.feed_update(bot, update)


class TelegramPoller:
    """`getUpdates` long polling that advances the offset only after each update committed."""

    def __init__(self, bot: Bot, dispatcher: Dispatcher, *, timeout: int = 25,
                 retry_seconds: float = 5.0) -> None:
        self.bot = bot
        self.dispatcher = dispatcher
        self.timeout = timeout
        self.retry_seconds = retry_seconds
        self.offset: int | None = None
        self.alive = False

    async def run(self, stop: asyncio.Event) -> None:
        """Poll until `stop` is set; an update being handled is finished first."""
        await self.bot.delete_webhook(drop_pending_updates=False)
        stopping = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                fetch = asyncio.ensure_future(self.bot.get_updates(
                    offset=self.offset, timeout=self.timeout, allowed_updates=UPDATE_TYPES,
                    request_timeout=self.timeout + 10))
                await asyncio.wait({fetch, stopping}, return_when=asyncio.FIRST_COMPLETED)
                if not fetch.done():
                    # Nothing fetched is lost: an update counts only once the offset passes it.
                    fetch.cancel()
                    await asyncio.gather(fetch, return_exceptions=True)
                    return
                try:
                    updates = fetch.result()
                except TelegramAPIError as exc:
                    self.alive = False
                    log.warning("getUpdates failed: %s", exc.message)
                    await self._pause(stop)
                    continue
                self.alive = True
                for update in updates:
                    try:
                        await feed(self.dispatcher, self.bot, update)
                    except Exception:
                        # Not confirmed: the same update comes back on the next getUpdates.
                        log.exception("update %s not handled; will retry", update.update_id)
                        await self._pause(stop)
                        break
                    self.offset = update.update_id + 1
        finally:
            stopping.cancel()
            self.alive = False

    async def _pause(self, stop: asyncio.Event) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=self.retry_seconds)

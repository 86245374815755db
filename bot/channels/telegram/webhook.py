"""Telegram's inbound route in webhook mode: `/telegram/webhook`, its secret token checked."""

from __future__ import annotations

import hmac
import logging
from dataclasses import dataclass

from aiogram import Bot, Dispatcher
from aiogram.types import Update
from aiohttp import web
from pydantic import ValidationError

log = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
PATH = "/telegram/webhook"


@dataclass(frozen=True)
class TelegramWebhook:
    """What the webhook route needs: the bot, the aiogram dispatcher and the secret token."""

    bot: Bot
    dispatcher: Dispatcher
    secret: str

    def routes(self) -> list[web.RouteDef]:
        """The webhook route, for the HTTP server to mount."""
        return [web.post(PATH, self.update)]

    async def update(self, request: web.Request) -> web.Response:
        """A Telegram update: answered 200 only after its handling is committed."""
        given = request.headers.get(SECRET_HEADER, "")
        if not hmac.compare_digest(given.encode(), self.secret.encode()):
            log.warning("rejected Telegram webhook call: bad secret token")
            raise web.HTTPUnauthorized()
        try:
            raw = await request.json()
        except ValueError:
            raise web.HTTPBadRequest(text="not a Telegram update") from None
        try:
            update = Update.model_validate(raw, context={"bot": self.bot})
        except ValidationError:
            update_id = raw.get("update_id") if isinstance(raw, dict) else None
            if not isinstance(update_id, int) or isinstance(update_id, bool):
                raise web.HTTPBadRequest(text="not a Telegram update") from None
            # An update our models reject (aiogram #1587): kept as it came, and answered 200
            # so Telegram sends the next one instead of this one again.
            await self.dispatcher["inbox"].store_raw(update_id, raw)
            return web.json_response({})
        # An exception here means nothing was committed: a 500 makes Telegram deliver it again.
        await self.dispatcher.feed_update(self.bot, update)
        return web.json_response({})

"""The aiogram HTTP session the bot uses: aiogram's own, with each Bot API method's response
model kept alive.

aiogram reads every answer through `Response[method.__returning__]`, a pydantic generic model
that pydantic caches only weakly (`pydantic._internal._generics._GENERIC_TYPES_CACHE` is a
`WeakValueDictionary`). Nothing else refers to it, so each garbage collection drops it and the
next answer builds the model again: about 4 ms of CPU against 0.3 ms
(`bench/telegram_response.py`), and in a busy process (the end-to-end triage test, profiled)
two answers in five paid it. Holding the parametrised model here, one per return type (a few
dozen at most), keeps pydantic's cache warm; what aiogram does with the answer is unchanged.
"""

from __future__ import annotations

import functools
from typing import Any

from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.methods import Response, TelegramMethod
from aiogram.methods.base import TelegramType


@functools.cache  # the strong reference: one per return type (`Message`, `list[Update]`...)
def response_model(returning: Any) -> type[Response[Any]]:
    """aiogram's response model for a method's return type, built once and kept."""
    return Response[returning]


class BotSession(AiohttpSession):
    """aiogram's aiohttp session whose response models survive garbage collection."""

    def check_response(self, bot: Bot, method: TelegramMethod[TelegramType], status_code: int,
                       content: str) -> Response[TelegramType]:
        response_model(method.__returning__)
        return super().check_response(bot, method, status_code, content)

"""The bot's aiogram session keeps each Bot API method's response model alive
(bot/channels/telegram/session.py): pydantic caches `Response[...]` only weakly, and without this
every garbage collection made the next answer build its model again (~4 ms of CPU an answer)."""

from __future__ import annotations

import gc
import json
import weakref

from aiogram.methods import GetMe, SendMessage

from bot.channels.telegram import make_bot
from fakes.servers import TOKEN
from fakes.telegram_api import FakeTelegramAPI

ANSWER = json.dumps({"ok": True, "result": {
    "message_id": 7, "date": 1_700_000_000, "chat": {"id": 6101, "type": "private"},
    "text": "x"}})


def test_an_answer_read_after_a_collection_uses_the_model_built_before() -> None:
    bot = make_bot(TOKEN, "http://127.0.0.1:9")
    method = SendMessage(chat_id=6101, text="x")
    first = bot.session.check_response(bot, method, 200, ANSWER)
    assert first.result is not None
    assert first.result.message_id == 7
    model = weakref.ref(type(first))
    del first
    gc.collect()
    assert model() is not None, "the response model was collected"
    again = bot.session.check_response(bot, method, 200, ANSWER)
    assert type(again) is model()
    assert again.result is not None


async def test_answers_from_the_bot_api_are_read_as_before(
        fake_telegram: FakeTelegramAPI) -> None:
    bot = make_bot(TOKEN, fake_telegram.base_url)
    try:
        sent = await bot.send_message(6101, "今天的药吃了吗？")
        gc.collect()
        again = await bot.send_message(6101, "second")
        me = await bot(GetMe())
    finally:
        await bot.session.close()
    assert (sent.text, again.text) == ("今天的药吃了吗？", "second")
    assert again.message_id != sent.message_id
    assert me.is_bot
    assert [c.params["text"] for c in fake_telegram.sent("sendMessage", 6101)] == [
        "今天的药吃了吗？", "second"]

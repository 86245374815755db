"""Reading a Bot API answer after a garbage collection: aiogram's own session against ours
(`bot.channels.telegram.session.BotSession`, which keeps each method's response model alive).

    .venv/bin/python bench/telegram_response.py [--answers 200]

aiogram reads every answer through `Response[method.__returning__]`, a pydantic generic model
cached only weakly, so a collection drops it and the next answer builds it again. Each answer
here (a sendMessage result, as the fake Bot API gives it) follows a `gc.collect()`, as in a busy
process where collections come every few answers; the figure is CPU time of the reading alone
(`check_response`), the collection not counted.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import time

import common
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.session.base import BaseSession
from aiogram.methods import SendMessage

from bot.channels.telegram.session import BotSession

ANSWER = json.dumps({"ok": True, "result": {
    "message_id": 1, "date": 1_700_000_000, "chat": {"id": 6101, "type": "private"},
    "text": "今天的药吃了吗？回复 1 已服"}})
GOAL = 1.0  # ms: an answer's reading should cost well under a send's round trip


def _reading_ms(session: BaseSession, answers: int) -> float:
    bot = Bot("42:BENCH", session=session)
    method = SendMessage(chat_id=6101, text="x")
    times = []
    for _ in range(answers):
        gc.collect()
        started = time.process_time()
        session.check_response(bot, method, 200, ANSWER)
        times.append(time.process_time() - started)
    return statistics.median(times) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--answers", type=int, default=200)
    args = parser.parse_args()
    # aiogram's first: once BotSession has kept a model, every session finds it.
    aiogram_ms = _reading_ms(AiohttpSession(), args.answers)
    ours_ms = _reading_ms(BotSession(), args.answers)
    print(f"{args.answers} answers, each after a collection; median CPU per reading:")
    print(f"  aiogram's AiohttpSession (baseline): {aiogram_ms:.3f} ms")
    print(f"  BotSession (models kept):            {ours_ms:.3f} ms")
    print(f"  ratio: {ours_ms / aiogram_ms:.3f}")
    common.goal(f"BotSession median < {GOAL} ms", ours_ms < GOAL, f"{ours_ms:.3f} ms")


if __name__ == "__main__":
    main()

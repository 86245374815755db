"""A small fake Telegram Bot API on 127.0.0.1: records every call, serves injected updates."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from fakes.loopback import LoopbackServer


@dataclass
class Call:
    """One Bot API request as the fake saw it (form fields decoded, JSON fields parsed)."""

    method: str
    params: dict[str, Any]
    files: dict[str, bytes] = field(default_factory=dict)
    at: float = field(default_factory=time.monotonic)  # when the request arrived


@dataclass
class Failure:
    """A canned error for sends to one chat: 429 with retry_after, 5xx, 403, 400."""

    status: int
    description: str
    retry_after: int | None = None
    times: int | None = None  # None: every time


BAD_GATEWAY_PAGE = ("<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
                    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>"
                    "\r\n</body>\r\n</html>\r\n")


# Bot API methods that send a file by file_id, URL or upload: method suffix -> its field.
FILE_METHODS = {"Voice": "voice", "Video": "video", "VideoNote": "video_note", "Audio": "audio",
                "Document": "document", "Animation": "animation", "Sticker": "sticker"}
JSON_FIELDS = {"reply_markup", "allowed_updates", "entities", "caption_entities"}


class FakeTelegramAPI:
    """The fake server; `base_url` goes into ENGAGE_TELEGRAM_API_URL."""

    def __init__(self, *, bot_id: int = 42, username: str = "engage_test_bot") -> None:
        self.bot_id = bot_id
        self.username = username
        self.calls: list[Call] = []
        self.updates: list[dict[str, Any]] = []
        self.confirmed_offset = 0
        self.webhook: dict[str, Any] | None = None
        self.failures: dict[str, Failure] = {}
        # Chats whose next sends are taken, then answered only after a delay (seconds, times).
        self.hangs: dict[str, list[float]] = {}
        # getUpdates answers: "html" (a proxy's 502 page), a Failure, or None (updates).
        self.updates_failure: str | Failure | None = None
        self.updates_failure_times: int | None = None  # None: until cleared
        self.served: dict[int, float] = {}  # update_id -> when getUpdates first returned it
        self.getupdates_answered = 0
        self._next_update = itertools.count(1000)
        self._next_message = itertools.count(1)
        self._new_update = asyncio.Event()
        self._server = LoopbackServer()
        self.base_url = ""

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/bot{token}/{method}", self._dispatch)
        self.base_url = await self._server.serve(app)
        return self.base_url

    async def stop(self) -> None:
        self._new_update.set()
        await self._server.close()

    # -- test controls -----------------------------------------------------------------------
    def fail_chat(self, chat_id: int | str, failure: Failure) -> None:
        """Make sends to a chat fail (e.g. 403 blocked, 429 flood, 502)."""
        self.failures[str(chat_id)] = failure

    def hang_chat(self, chat_id: int | str, delay: float, times: int = 1) -> None:
        """The next `times` sends to a chat are delivered, but answered only after `delay`
        seconds (a client timeout after Telegram took the message)."""
        self.hangs[str(chat_id)] = [delay] * times

    def inject(self, update: dict[str, Any]) -> int:
        """Queue an update (without update_id it gets the next one); return its update_id."""
        update = dict(update)
        update.setdefault("update_id", next(self._next_update))
        self.updates.append(update)
        self._new_update.set()
        return int(update["update_id"])

    def fail_updates(self, failure: str | Failure, times: int | None = None) -> None:
        """Make getUpdates fail: "html" serves a proxy's 502 page; `times` None: until
        `recover_updates`."""
        self.updates_failure, self.updates_failure_times = failure, times

    def recover_updates(self) -> None:
        """getUpdates answers normally again."""
        self.updates_failure, self.updates_failure_times = None, None

    def message_update(self, user_id: int, text: str, *, update_id: int | None = None,
                       language_code: str = "zh-hans", message_id: int | None = None
                       ) -> dict[str, Any]:
        """A private-chat text message update."""
        user = {"id": user_id, "is_bot": False, "first_name": "P", "language_code": language_code}
        update: dict[str, Any] = {"message": {
            "message_id": message_id or next(self._next_message), "date": int(time.time()),
            "chat": {"id": user_id, "type": "private", "first_name": "P"},
            "from": user, "text": text}}
        if update_id is not None:
            update["update_id"] = update_id
        return update

    def edited_update(self, user_id: int, message_id: int, text: str, *,
                      edit_date: int | None = None) -> dict[str, Any]:
        """An edit of a private-chat message the user sent earlier."""
        update = self.message_update(user_id, text, message_id=message_id)
        message = update.pop("message")
        message["edit_date"] = edit_date or int(time.time()) + 1
        return {"edited_message": message}

    def media_update(self, user_id: int, kind: str, *, caption: str | None = None,
                     file_id: str | None = None, language_code: str = "zh-hans"
                     ) -> dict[str, Any]:
        """A private-chat message with a photo, voice note, video, document, sticker, audio,
        video note or location (as Telegram sends them: a photo in several sizes)."""
        update = self.message_update(user_id, "", language_code=language_code)
        message = update["message"]
        del message["text"]
        file_id = file_id or f"{kind}-file-{message['message_id']}"
        unique = "u" + file_id[-20:]
        if kind == "photo":
            message["photo"] = [
                {"file_id": file_id + "-small", "file_unique_id": unique + "s", "width": 90,
                 "height": 67, "file_size": 1200},
                {"file_id": file_id, "file_unique_id": unique, "width": 1280, "height": 960,
                 "file_size": 98000}]
        elif kind == "location":
            message["location"] = {"latitude": 39.9087, "longitude": 116.3975}
        elif kind == "sticker":
            message["sticker"] = {"file_id": file_id, "file_unique_id": unique, "type": "regular",
                                  "width": 512, "height": 512, "is_animated": False,
                                  "is_video": False, "emoji": "\U0001f44d"}
        else:
            file: dict[str, Any] = {"file_id": file_id, "file_unique_id": unique,
                                    "file_size": 40000}
            if kind in ("voice", "audio", "video", "video_note"):
                file["duration"] = 7
            if kind == "voice":
                file["mime_type"] = "audio/ogg"
            if kind in ("video", "video_note"):
                file.update(width=640, height=480, length=640)
            if kind == "video":
                file["mime_type"] = "video/mp4"
            if kind in ("document", "audio"):
                file.update(file_name="result.pdf" if kind == "document" else "song.mp3",
                            mime_type="application/pdf" if kind == "document" else "audio/mpeg")
            message[kind] = file
        if caption is not None:
            message["caption"] = caption
        return update

    def group_update(self, chat_id: int, user_id: int, text: str, *,
                     chat_type: str = "supergroup") -> dict[str, Any]:
        """A text message in a group chat the bot is in."""
        update = self.message_update(user_id, text)
        update["message"]["chat"] = {"id": chat_id, "type": chat_type, "title": "Ward group"}
        return update

    def member_update(self, user_id: int, status: str) -> dict[str, Any]:
        """my_chat_member: the user blocked ("kicked") or unblocked ("member") the bot."""
        user = {"id": user_id, "is_bot": False, "first_name": "P"}
        bot = {"id": self.bot_id, "is_bot": True, "first_name": "Engage"}

        def member(state: str) -> dict[str, Any]:
            return {"user": bot, "status": state, **({"until_date": 0} if state == "kicked"
                                                      else {})}

        return {"my_chat_member": {
            "chat": {"id": user_id, "type": "private", "first_name": "P"}, "from": user,
            "date": int(time.time()),
            "old_chat_member": member("member" if status == "kicked" else "kicked"),
            "new_chat_member": member(status)}}

    def unparsable_update(self, user_id: int, text: str = "look at this") -> dict[str, Any]:
        """A message aiogram's models reject (aiogram #1587: an external reply's empty story)."""
        update = self.message_update(user_id, text)
        update["message"]["external_reply"] = {
            "origin": {"type": "user", "date": int(time.time()),
                       "sender_user": {"id": 7, "is_bot": False, "first_name": "Q"}},
            "story": {}}
        return update

    def callback_update(self, user_id: int, data: str, *, message_id: int = 1,
                        update_id: int | None = None) -> dict[str, Any]:
        """A button press on a message the bot sent."""
        user = {"id": user_id, "is_bot": False, "first_name": "P"}
        update: dict[str, Any] = {"callback_query": {
            "id": f"cq{next(self._next_message)}", "from": user, "chat_instance": "ci",
            "data": data, "message": {
                "message_id": message_id, "date": int(time.time()),
                "chat": {"id": user_id, "type": "private", "first_name": "P"},
                "from": {"id": self.bot_id, "is_bot": True, "first_name": "Engage"},
                "text": "reminder"}}}
        if update_id is not None:
            update["update_id"] = update_id
        return update

    def sent(self, method: str = "sendMessage", chat_id: int | str | None = None) -> list[Call]:
        """Recorded calls of one method, optionally to one chat."""
        return [c for c in self.calls if c.method == method
                and (chat_id is None or str(c.params.get("chat_id")) == str(chat_id))]

    async def wait_for(self, method: str, count: int = 1, within: float = 5.0,
                       chat_id: int | str | None = None) -> list[Call]:
        """Wait until at least `count` calls of a method (to one chat) were seen."""
        deadline = asyncio.get_running_loop().time() + within
        while len(self.sent(method, chat_id)) < count:
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"only {len(self.sent(method, chat_id))} {method} calls: "
                                     f"{self.sent(method, chat_id)}")
            await asyncio.sleep(0.02)
        return self.sent(method, chat_id)

    async def texts_to(self, chat_id: int | str, count: int = 1,
                       within: float = 5.0) -> list[str]:
        """Wait until at least `count` messages went to one chat: the texts sent to it."""
        return [str(c.params["text"])
                for c in await self.wait_for("sendMessage", count, within, chat_id)]

    async def wait_confirmed(self, update_id: int, within: float = 5.0) -> None:
        """Wait until a poller asked for updates past `update_id` (confirming it)."""
        deadline = asyncio.get_running_loop().time() + within
        while self.confirmed_offset <= update_id:
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"update {update_id} not confirmed")
            await asyncio.sleep(0.02)

    # -- the API -----------------------------------------------------------------------------
    async def _dispatch(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        params: dict[str, Any] = {}
        files: dict[str, bytes] = {}
        form = await request.post()
        for key, value in form.items():
            if isinstance(value, web.FileField):
                files[key] = value.file.read()
            elif key in JSON_FIELDS:
                params[key] = json.loads(str(value))
            else:
                params[key] = str(value)
        for key, value in list(params.items()):  # aiogram sends files as attach://<field>
            if isinstance(value, str) and value.startswith("attach://"):
                files[key] = files.get(value.removeprefix("attach://"), b"")
        self.calls.append(Call(method, params, files))
        handler = {"getMe": self._get_me, "getUpdates": self._get_updates,
                   "sendMessage": self._send_message, "sendPhoto": self._send_photo,
                   "answerCallbackQuery": self._answer_callback_query,
                   "editMessageReplyMarkup": self._edit_message_reply_markup,
                   "setWebhook": self._set_webhook, "deleteWebhook": self._delete_webhook,
                   "close": self._close_bot, "sendLocation": self._send_location,
                   "copyMessage": self._copy_message,
                   **{f"send{name}": self._send_file(field)
                      for name, field in FILE_METHODS.items()}}.get(method)
        if handler is None:
            return self._error(404, "Not Found: method not found")
        result = await handler(params, files)
        if isinstance(result, web.Response):
            return result
        return web.json_response({"ok": True, "result": result})

    def _error(self, status: int, description: str, retry_after: int | None = None
               ) -> web.Response:
        body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
        if retry_after is not None:
            body["parameters"] = {"retry_after": retry_after}
        return web.json_response(body, status=status)

    def _failure_for(self, chat_id: str) -> web.Response | None:
        failure = self.failures.get(chat_id)
        if failure is None:
            return None
        if failure.times is not None:
            failure.times -= 1
            if failure.times <= 0:
                del self.failures[chat_id]
        return self._error(failure.status, failure.description, failure.retry_after)

    def _message(self, chat_id: str, **extra: Any) -> dict[str, Any]:
        return {"message_id": next(self._next_message), "date": int(time.time()),
                "chat": {"id": int(chat_id), "type": "private"},
                "from": {"id": self.bot_id, "is_bot": True, "first_name": "Engage"}, **extra}

    async def _get_me(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        return {"id": self.bot_id, "is_bot": True, "first_name": "Engage",
                "username": self.username}

    async def _get_updates(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        failure = self.updates_failure
        if failure is not None:
            if self.updates_failure_times is not None:
                self.updates_failure_times -= 1
                if self.updates_failure_times <= 0:
                    self.recover_updates()
            if failure == "html":
                return web.Response(status=502, text=BAD_GATEWAY_PAGE, content_type="text/html")
            assert isinstance(failure, Failure)
            return self._error(failure.status, failure.description, failure.retry_after)
        result = await self._pending_updates(params)
        now = time.monotonic()
        for update in result:
            self.served.setdefault(int(update["update_id"]), now)
        self.getupdates_answered += 1
        return result

    async def _pending_updates(self, params: dict[str, Any]) -> Any:
        if self.webhook is not None:
            return self._error(409, "Conflict: can't use getUpdates while webhook is active")
        offset = int(params.get("offset", 0) or 0)
        if offset:
            # Telegram forgets every update below the offset: that is the confirmation.
            self.confirmed_offset = max(self.confirmed_offset, offset)
            self.updates = [u for u in self.updates if u["update_id"] >= offset]
        timeout = float(params.get("timeout", 0) or 0)
        pending = [u for u in self.updates if u["update_id"] >= offset]
        if not pending and timeout > 0:
            self._new_update.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._new_update.wait(), timeout=min(timeout, 1.0))
            pending = [u for u in self.updates if u["update_id"] >= offset]
        limit = int(params.get("limit", 100) or 100)
        return pending[:limit]

    async def _send_message(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        chat_id = str(params["chat_id"])
        failure = self._failure_for(chat_id)
        if failure is not None:
            return failure
        if len(params.get("text", "")) > 4096:  # as Telegram does
            return self._error(400, "Bad Request: message is too long")
        extra: dict[str, Any] = {"text": params.get("text", "")}
        if "reply_markup" in params:
            extra["reply_markup"] = params["reply_markup"]
        message = self._message(chat_id, **extra)
        hangs = self.hangs.get(chat_id)
        if hangs:
            await asyncio.sleep(hangs.pop(0))
        return message

    def _sent_to_chat(self, params: dict[str, Any], **fields: Any) -> Any:
        """The message a send to params' chat makes, or the failure planned for that chat."""
        chat_id = str(params["chat_id"])
        failure = self._failure_for(chat_id)
        return failure if failure is not None else self._message(chat_id, **fields)

    async def _send_photo(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        photo = [{"file_id": "ph1", "file_unique_id": "u1", "width": 10, "height": 10}]
        return self._sent_to_chat(params, photo=photo, caption=params.get("caption"))

    def _send_file(self, field: str) -> Any:
        """sendVoice, sendDocument...: the file as Telegram would answer (a new file_id is not
        made up: the one sent comes back)."""
        async def send(params: dict[str, Any], files: dict[str, bytes]) -> Any:
            file_id = str(params.get(field) or f"uploaded-{field}")
            sent: dict[str, Any] = {"file_id": file_id, "file_unique_id": "u-" + file_id[:20]}
            if field in ("voice", "video", "video_note", "audio", "animation"):
                sent["duration"] = 1
            if field in ("video", "video_note", "animation", "sticker"):
                sent.update(width=10, height=10, length=10)
            if field == "sticker":
                sent.update(type="regular", is_animated=False, is_video=False)
            return self._sent_to_chat(params, **{field: sent}, caption=params.get("caption"))
        return send

    async def _send_location(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        return self._sent_to_chat(params, location={"latitude": float(params["latitude"]),
                                                    "longitude": float(params["longitude"])})

    async def _copy_message(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        failure = self._failure_for(str(params["chat_id"]))
        if failure is not None:
            return failure
        return {"message_id": next(self._next_message)}

    async def _answer_callback_query(self, params: dict[str, Any], files: dict[str, bytes]
                                     ) -> Any:
        return True

    async def _edit_message_reply_markup(self, params: dict[str, Any], files: dict[str, bytes]
                                        ) -> Any:
        return self._message(str(params.get("chat_id", 0)), text="edited")

    async def _set_webhook(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        self.webhook = params
        return True

    async def _delete_webhook(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        self.webhook = None
        if params.get("drop_pending_updates") in ("true", "True", "1"):
            self.updates.clear()
        return True

    async def _close_bot(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        return True

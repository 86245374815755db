"""The Official Account's server URL, `/wechat`: GET verification and POSTed messages/events.

- GET `signature`, `timestamp`, `nonce`, `echostr`: the signature checked
  (`wechatpy.utils.check_signature`), `echostr` answered; a forged one gets 403.
- POST: XML in plain mode (signature checked) or safe mode (`encrypt_type=aes`: `msg_signature`
  checked and the body decrypted by `wechatpy.crypto.WeChatCrypto`; with an AES key configured a
  plain push is refused), parsed by `wechatpy.parse_message`. The event is stored (idempotent by
  MsgId, or FromUserName+CreateTime+event for events: WeChat retries three times when it has no
  answer within 5 s) and answered "success" at once; it is handled after the answer, in the
  background (`Conversation.handle`; a crash in between leaves it for the pending sweep).

What becomes what: a text is a text (a voice message with WeChat's recognition: its text); a
follow is `member:unblocked`, an unfollow `member:blocked`; a scan of a parametric QR code (on
following or after) is `link:<scene>` (the scene is a link code); a menu click is the menu key's
action (`MENU`). Other events (menu links, location reports, template delivery reports) are not
stored: nothing in them is for the conversation.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from aiohttp import web
from wechatpy import parse_message
from wechatpy.crypto import WeChatCrypto
from wechatpy.exceptions import InvalidAppIdException, InvalidSignatureException
from wechatpy.utils import check_signature

from bot.channels.wechat import WECHAT
from bot.conversation import Conversation, InboundEvent
from trial.clock import Clock

log = logging.getLogger(__name__)

ROUTE = "/wechat"
# Menu keys (the custom menu's CLICK buttons, see `menu()`) and the actions they stand for.
MENU = {"DOSE_TAKEN": "dose:taken", "REPORT": "report:start", "HELP": "help"}
MENU_NAMES = {"DOSE_TAKEN": "服药已完成", "REPORT": "报告症状", "HELP": "帮助"}


def menu() -> dict[str, Any]:
    """The custom menu to create (`/cgi-bin/menu/create`): three CLICK buttons."""
    return {"button": [{"type": "click", "name": MENU_NAMES[key], "key": key}
                       for key in ("DOSE_TAKEN", "REPORT", "HELP")]}


class WeChatInbound:
    """The `/wechat` routes for one Official Account."""

    def __init__(self, conversation: Conversation, clock: Clock, *, app_id: str, token: str,
                 aes_key: str | None = None) -> None:
        self.conversation = conversation
        self.clock = clock
        self.token = token
        self.crypto = WeChatCrypto(token, aes_key, app_id) if aes_key else None
        self._tasks: set[asyncio.Task[Any]] = set()

    def routes(self) -> list[web.RouteDef]:
        return [web.get(ROUTE, self.verify), web.post(ROUTE, self.push)]

    def _signed(self, request: web.Request) -> None:
        query = request.query
        try:
            check_signature(self.token, query.get("signature", ""), query.get("timestamp", ""),
                            query.get("nonce", ""))
        except InvalidSignatureException:
            log.warning("rejected %s %s: bad WeChat signature", request.method, request.path)
            raise web.HTTPForbidden() from None

    async def verify(self, request: web.Request) -> web.Response:
        """WeChat's check of the server URL: the echostr back when the signature is ours."""
        self._signed(request)
        return web.Response(text=request.query.get("echostr", ""))

    async def push(self, request: web.Request) -> web.Response:
        """A message or event: stored, answered "success", then handled."""
        self._signed(request)
        body = await request.read()
        query = request.query
        if self.crypto is not None:
            if query.get("encrypt_type") != "aes":
                log.warning("rejected a plain WeChat push: safe (AES) mode is configured")
                raise web.HTTPForbidden()
            try:
                body = self.crypto.decrypt_message(
                    body, query.get("msg_signature", ""), query.get("timestamp", ""),
                    query.get("nonce", "")).encode()
            except (InvalidSignatureException, InvalidAppIdException):
                log.warning("rejected a WeChat push: bad msg_signature or app id")
                raise web.HTTPForbidden() from None
            except Exception:
                raise web.HTTPBadRequest(text="not a WeChat push") from None
        try:
            message = parse_message(body)
        except Exception:
            raise web.HTTPBadRequest(text="not a WeChat push") from None
        event = self._event(message) if message is not None else None
        if event is not None:
            await self.conversation.store_all([event])  # stored before WeChat hears back
            self._spawn(lambda: self.conversation.handle(event))
        return web.Response(text="success")

    def _spawn(self, work: Callable[[], Any]) -> None:
        async def run() -> None:
            try:
                await work()
            except Exception:
                # Stored: the pending sweep handles it later.
                log.exception("a WeChat push could not be handled now")

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def idle(self) -> None:
        """Wait until every push received so far is handled (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def _event(self, message: Any) -> InboundEvent | None:
        data: dict[str, Any] = dict(message._data)
        sender = str(data.get("FromUserName") or "")
        if not sender:
            return None
        created = str(data.get("CreateTime") or "")
        payload = {"msg_type": message.type, "create_time": created}
        kind = message.type
        text, action = "", None
        external_id = str(data.get("MsgId") or "")
        if kind == "event":
            event = str(getattr(message, "event", "")).lower()
            external_id = f"ev:{sender}:{created}:{event}"
            if event == "subscribe":
                action = "member:unblocked"
            elif event == "unsubscribe":
                action = "member:blocked"
            elif event in ("subscribe_scan", "scan"):
                scene = str(getattr(message, "scene_id", "") or "")
                action = f"link:{scene}" if scene else "member:unblocked"
            elif event == "click":
                action = MENU.get(str(getattr(message, "key", "")))
                if action is None:
                    return None
            else:
                return None  # VIEW, LOCATION, TEMPLATESENDJOBFINISH...: nothing to handle
            payload["event"] = event
        elif kind == "text":
            text = str(getattr(message, "content", "") or "")
        elif kind == "voice" and data.get("Recognition"):
            text = str(data["Recognition"])  # WeChat's speech recognition, when switched on
        if not external_id:
            external_id = f"msg:{sender}:{created}"
        return InboundEvent(channel=WECHAT, external_id=external_id[:64], sender=sender,
                            text=text, action=action, received_at=self.clock.now(),
                            payload=payload)

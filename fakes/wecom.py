"""A fake WeCom (企业微信) server API on 127.0.0.1, and the signed, encrypted callback pushes
WeCom makes to an app's callback URL (made with wechatpy's real crypto).

The API part answers as qyapi.weixin.qq.com does: `/cgi-bin/gettoken`, `/cgi-bin/message/send`
(text, image, template_card of type button_interaction), `/cgi-bin/media/upload` and
`/cgi-bin/message/update_template_card`, every answer a JSON body with `errcode` (0: ok) and
HTTP 200. It records every request, refuses what the real one refuses (an unknown token:
40014; a token it said has expired: 42001; a recipient outside the app: 81013; a text over
2,048 bytes: 44004; a card without a task id or with more than 6 buttons), and can be told to
expire the token once. The token endpoint, errcode answers and request records are
`fakes.tencent`'s.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from wechatpy.enterprise.crypto import PrpCrypto, WeChatCrypto
from wechatpy.utils import to_text

from fakes.loopback import fixture
from fakes.tencent import APIRequest, FakeTencentAPI, message_xml

CORP_ID = "ww0123456789abcdef"
AGENT_ID = 1000002
SECRET = "wecom-app-secret-0123456789"
TOKEN = "wecomCallbackToken"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"  # 43 characters, as WeCom makes them

TEXT_BYTES = 2048
MAX_BUTTONS = 6


WeComRequest = APIRequest  # one request to the fake (path, query, body, upload, errcode)


@dataclass
class Sent:
    """A message the fake accepted."""

    msgid: str
    touser: str
    msgtype: str
    payload: dict[str, Any]
    response_code: str = ""  # a template card's: what a button event carries back
    at: float = field(default_factory=time.monotonic)


class FakeWeComAPI(FakeTencentAPI):
    """The fake server; `base_url` goes into ENGAGE_WECOM_API_URL."""

    TOKEN_PATH = "/cgi-bin/gettoken"
    UNKNOWN_TOKEN = 40014
    NAME = "WeCom"

    def __init__(self, *, corp_id: str = CORP_ID, secret: str = SECRET,
                 agent_id: int = AGENT_ID) -> None:
        super().__init__()
        self.corp_id = corp_id
        self.secret = secret
        self.agent_id = agent_id
        self.sent: list[Sent] = []
        self.updates: list[dict[str, Any]] = []
        self.users: set[str] | None = None  # None: every userid is in the app's range
        self.fail_user: dict[str, int] = {}  # userid -> errcode for sends to them
        self.send_delay = 0.0  # message/send answers only after this long (client timeouts)
        self._ids = itertools.count(1)

    def routes(self) -> list[web.RouteDef]:
        return [web.get(self.TOKEN_PATH, self._gettoken),
                web.post("/cgi-bin/message/send", self._send),
                web.post("/cgi-bin/media/upload", self._upload),
                web.post("/cgi-bin/message/update_template_card", self._update)]

    # -- test controls -----------------------------------------------------------------------
    def sent_to(self, userid: str | None = None, msgtype: str | None = None) -> list[Sent]:
        return [s for s in self.sent if (userid is None or s.touser == userid)
                and (msgtype is None or s.msgtype == msgtype)]

    async def wait_for(self, count: int = 1, within: float = 5.0, *,
                       userid: str | None = None, msgtype: str | None = None) -> list[Sent]:
        """Wait until `count` messages (to `userid`, of `msgtype`) were accepted."""
        return await self._until(count, within, lambda: self.sent_to(userid, msgtype),
                                 lambda: [s.payload for s in self.sent])

    # -- the API -----------------------------------------------------------------------------
    async def _gettoken(self, request: web.Request) -> web.Response:
        entry = self._record(request)
        if entry.query.get("corpid") != self.corp_id:
            return self._answer(entry, 40013, "invalid corpid")
        if entry.query.get("corpsecret") != self.secret:
            return self._answer(entry, 40001, "invalid credential")
        return self._answer(entry, 0, access_token=self._issue_token(), expires_in=7200)

    async def _send(self, request: web.Request) -> web.Response:
        body = await self._json(request)
        entry = self._record(request, body)
        if self.send_delay:
            await asyncio.sleep(self.send_delay)
        refused = self._token_error(entry)
        if refused is not None:
            return refused
        if body is None:
            return self._answer(entry, 47001, "data format error")
        if body.get("agentid") != self.agent_id:
            return self._answer(entry, 40056, "invalid agentid")
        touser = str(body.get("touser") or "")
        if not touser or "|" in touser or (self.users is not None and touser not in self.users):
            return self._answer(entry, 81013, "user & party & tag all invalid")
        if touser in self.fail_user:
            return self._answer(entry, self.fail_user[touser], "refused by the test")
        msgtype = str(body.get("msgtype") or "")
        problem = self._shape_problem(msgtype, body)
        if problem is not None:
            return self._answer(entry, *problem)
        msgid = f"msg{next(self._ids):06d}"
        sent = Sent(msgid, touser, msgtype, body)
        self.sent.append(sent)
        extra: dict[str, Any] = {"invaliduser": "", "msgid": msgid}
        if msgtype == "template_card":
            sent.response_code = extra["response_code"] = secrets.token_hex(16)
        return self._answer(entry, 0, **extra)

    def _shape_problem(self, msgtype: str, body: dict[str, Any]) -> tuple[int, str] | None:
        if msgtype == "text":
            content = (body.get("text") or {}).get("content")
            if not isinstance(content, str) or not content:
                return 41009, "missing text content"
            if len(content.encode()) > TEXT_BYTES:
                return 44004, "text content exceeds limit"
            return None
        if msgtype == "image":
            if (body.get("image") or {}).get("media_id") not in self.media:
                return 40007, "invalid media_id"
            return None
        if msgtype == "template_card":
            card = body.get("template_card") or {}
            if card.get("card_type") != "button_interaction":
                return 40058, "card_type not supported by this fake"
            task_id = str(card.get("task_id") or "")
            if not task_id or len(task_id.encode()) > 128:
                return 40058, "invalid task_id"
            if any(s.payload.get("template_card", {}).get("task_id") == task_id
                   for s in self.sent):
                return 40058, "task_id is duplicated"
            title = (card.get("main_title") or {}).get("title")
            if not title and not card.get("sub_title_text"):
                return 40058, "main_title.title or sub_title_text required"
            buttons = card.get("button_list") or []
            if not 1 <= len(buttons) <= MAX_BUTTONS:
                return 40058, "button_list must have 1 to 6 buttons"
            for button in buttons:
                key = str(button.get("key") or "")
                if not button.get("text") or not key or len(key.encode()) > 1024:
                    return 40058, "invalid button"
            return None
        return 40008, "invalid message type"

    async def _upload(self, request: web.Request) -> web.Response:
        data = b""
        if request.content_type.startswith("multipart/"):
            reader = await request.multipart()
            async for part in reader:
                if getattr(part, "name", None) == "media":
                    data = bytes(await part.read())  # type: ignore[union-attr]
        entry = self._record(request, upload=data)
        refused = self._token_error(entry)
        if refused is not None:
            return refused
        if entry.query.get("type") != "image" or not data:
            return self._answer(entry, 40004, "invalid media type or empty file")
        if not data.startswith(b"\x89PNG") and not data.startswith(b"\xff\xd8"):
            return self._answer(entry, 40005, "invalid file type")
        media_id = f"media{next(self._ids):06d}"
        self.media[media_id] = data
        return self._answer(entry, 0, type="image", media_id=media_id,
                            created_at=str(int(time.time())))

    async def _update(self, request: web.Request) -> web.Response:
        body = await self._json(request)
        entry = self._record(request, body)
        refused = self._token_error(entry)
        if refused is not None:
            return refused
        if body is None or body.get("agentid") != self.agent_id or not body.get("response_code"):
            return self._answer(entry, 40058, "agentid and response_code required")
        self.updates.append(body)
        return self._answer(entry, 0, invaliduser=[])


fake_wecom = fixture("fake_wecom", FakeWeComAPI)  # the fake, started (a pytest fixture)


# -- the pushes WeCom makes to our callback URL --------------------------------------------------
@dataclass(frozen=True)
class Push:
    """One callback request as WeCom makes it: the query string and the body (None: GET)."""

    query: dict[str, str]
    body: str | None = None


class CallbackPusher:
    """Makes WeCom's signed, AES-encrypted callback pushes with wechatpy's crypto."""

    def __init__(self, *, token: str = TOKEN, aes_key: str = AES_KEY, corp_id: str = CORP_ID,
                 agent_id: int = AGENT_ID) -> None:
        self.crypto = WeChatCrypto(token, aes_key, corp_id)
        self.token = token
        self.corp_id = corp_id
        self.agent_id = agent_id
        self._msg_ids = itertools.count(7_000_000_000_000_000_001)

    def verify_url(self, echostr: str, *, timestamp: int | None = None) -> Push:
        """The GET WeCom makes when the callback URL is saved: echostr encrypted, signed."""
        encrypted = to_text(PrpCrypto(self.crypto.key).encrypt(echostr, self.corp_id))
        ts, nonce = str(timestamp or int(time.time())), secrets.token_hex(5)
        from wechatpy.crypto import _get_signature

        return Push({"msg_signature": _get_signature(self.token, ts, nonce, encrypted),
                     "timestamp": ts, "nonce": nonce, "echostr": encrypted})

    def seal(self, plain_xml: str, *, timestamp: int | None = None) -> Push:
        """A POST push: the XML encrypted and signed as WeCom does."""
        ts, nonce = str(timestamp or int(time.time())), secrets.token_hex(5)
        sealed = self.crypto.encrypt_message(plain_xml, nonce, ts)
        import xmltodict

        outer = xmltodict.parse(sealed)["xml"]
        # WeCom's POST body carries ToUserName, AgentID and Encrypt; the signature rides in
        # the query string.
        body = (f"<xml><ToUserName><![CDATA[{self.corp_id}]]></ToUserName>"
                f"<AgentID><![CDATA[{self.agent_id}]]></AgentID>"
                f"<Encrypt><![CDATA[{outer['Encrypt']}]]></Encrypt></xml>")
        return Push({"msg_signature": outer["MsgSignature"], "timestamp": ts, "nonce": nonce},
                    body)

    def text(self, userid: str, content: str, *, msg_id: int | None = None,
             create_time: int | None = None) -> Push:
        """A member typed `content` in the app."""
        msg_id = msg_id or next(self._msg_ids)
        when = create_time or int(time.time())
        return self.seal(message_xml(
            self.corp_id, userid, when, "text",
            f"<Content><![CDATA[{content}]]></Content><MsgId>{msg_id}</MsgId>"
            f"<AgentID>{self.agent_id}</AgentID>"))

    def button(self, userid: str, key: str, *, task_id: str = "task",
               response_code: str = "", create_time: int | None = None) -> Push:
        """A member pressed the button `key` on a template card (template_card_event)."""
        when = create_time or int(time.time())
        return self.seal(message_xml(
            self.corp_id, userid, when, "event",
            f"<Event><![CDATA[template_card_event]]></Event>"
            f"<EventKey><![CDATA[{key}]]></EventKey><TaskId><![CDATA[{task_id}]]></TaskId>"
            f"<CardType><![CDATA[button_interaction]]></CardType>"
            f"<ResponseCode><![CDATA[{response_code}]]></ResponseCode>"
            f"<AgentID>{self.agent_id}</AgentID>"))

    def press(self, sent: Sent, key: str, *, userid: str | None = None) -> Push:
        """Pressing the button `key` on the card the fake accepted as `sent` (by `userid`,
        by default the member it was sent to)."""
        card = sent.payload["template_card"]
        assert key in [b["key"] for b in card["button_list"]], card["button_list"]
        return self.button(userid or sent.touser, key, task_id=card["task_id"],
                           response_code=sent.response_code)

"""A fake WeChat Official Account API on 127.0.0.1, and the signed (plain or AES) pushes WeChat
makes to an account's server URL (made with wechatpy's real signer and crypto).

The API part answers as api.weixin.qq.com does: `/cgi-bin/token`, `/cgi-bin/message/custom/send`
(text, image), `/cgi-bin/message/template/send`, `/cgi-bin/qrcode/create`, `/cgi-bin/media/upload`
and `/cgi-bin/menu/create`, every answer a JSON body with `errcode` (0: ok) and HTTP 200. It
records every request and refuses what the real one refuses: an unknown token (40001), a token
it said has expired (42001), a user who does not follow the account (43004), a customer-service
message more than 48 hours after the user's last message (45015), an unknown template (40037);
it can be told to expire the current token once (42001, or 40001 as when another fetch
replaced it). The token endpoint, errcode answers and request records are `fakes.tencent`'s.
"""

from __future__ import annotations

import itertools
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from wechatpy.crypto import WeChatCrypto
from wechatpy.utils import WeChatSigner

from engage.config import Settings
from fakes.loopback import fixture
from fakes.tencent import APIRequest, FakeTencentAPI, message_xml

APP_ID = "wx0123456789abcdef"
APP_SECRET = "wechat-app-secret-0123456789"
TOKEN = "wechatServerToken"
AES_KEY = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopq"  # 43 characters, as WeChat makes them
ACCOUNT = "gh_0123456789ab"  # the account's own id: ToUserName of every push

TEMPLATES = {"tmpl-dose", "tmpl-visit", "tmpl-notice"}


WeChatRequest = APIRequest  # one request to the fake (path, query, body, upload, errcode)


@dataclass
class Sent:
    """A message the fake accepted: `kind` is custom or template."""

    msgid: int
    kind: str
    touser: str
    payload: dict[str, Any]
    at: float = field(default_factory=time.monotonic)

    @property
    def text(self) -> str:
        """The customer-service text, or a template's field values one per line."""
        if self.kind == "custom":
            return str(self.payload.get("text", {}).get("content", ""))
        return "\n".join(str(v.get("value", "")) for v in self.payload.get("data", {}).values())


class FakeWeChatAPI(FakeTencentAPI):
    """The fake server; `base_url` goes into ENGAGE_WECHAT_API_URL. `window` is what the real
    one knows and we track ourselves: each user's last message to the account (set it with
    `user_wrote`), else free-form messages are refused with 45015."""

    TOKEN_PATH = "/cgi-bin/token"
    UNKNOWN_TOKEN = 40001
    NAME = "WeChat"

    def __init__(self, *, app_id: str = APP_ID, secret: str = APP_SECRET) -> None:
        super().__init__()
        self.app_id = app_id
        self.secret = secret
        self.sent: list[Sent] = []
        self.qr: list[dict[str, Any]] = []
        self.menus: list[dict[str, Any]] = []
        self.unfollowed: set[str] = set()  # openids that do not follow the account
        self.last_message: dict[str, float] = {}  # openid -> when they last wrote (time.time())
        self.window_check = False  # refuse custom sends outside 48 h (when user_wrote is used)
        self._ids = itertools.count(1_000_000_001)

    def routes(self) -> list[web.RouteDef]:
        return [web.get(self.TOKEN_PATH, self._token),
                web.post("/cgi-bin/message/custom/send", self._custom),
                web.post("/cgi-bin/message/template/send", self._template),
                web.post("/cgi-bin/qrcode/create", self._qrcode),
                web.post("/cgi-bin/media/upload", self._upload),
                web.post("/cgi-bin/menu/create", self._menu)]

    # -- test controls -----------------------------------------------------------------------
    def sent_to(self, openid: str | None = None, kind: str | None = None) -> list[Sent]:
        return [s for s in self.sent if (openid is None or s.touser == openid)
                and (kind is None or s.kind == kind)]

    async def wait_for(self, count: int = 1, within: float = 5.0, *,
                       openid: str | None = None, kind: str | None = None) -> list[Sent]:
        """Wait until `count` messages (to `openid`, of `kind`) were accepted."""
        return await self._until(count, within, lambda: self.sent_to(openid, kind),
                                 lambda: [(s.kind, s.text) for s in self.sent])

    # -- the API -----------------------------------------------------------------------------
    async def _token(self, request: web.Request) -> web.Response:
        entry = self._record(request)
        if entry.query.get("grant_type") != "client_credential":
            return self._answer(entry, 40002, "invalid grant_type")
        if entry.query.get("appid") != self.app_id:
            return self._answer(entry, 40013, "invalid appid")
        if entry.query.get("secret") != self.secret:
            return self._answer(entry, 40001, "invalid credential, secret is invalid")
        # The real one answers without errcode on success.
        return web.json_response({"access_token": self._issue_token(), "expires_in": 7200})

    async def _call(self, request: web.Request) -> tuple[APIRequest, dict[str, Any] | None]:
        body = await self._json(request)
        return self._record(request, body), body

    async def _custom(self, request: web.Request) -> web.Response:
        entry, body = await self._call(request)
        if (refused := self._token_error(entry)) is not None:
            return refused
        if body is None or not body.get("touser") or body.get("msgtype") not in (
                "text", "image", "news"):
            return self._answer(entry, 40008, "invalid message type")
        touser = str(body["touser"])
        if touser in self.unfollowed:
            return self._answer(entry, 43004, "require subscribe")
        if self.window_check and time.time() - self.last_message.get(touser, 0) > 48 * 3600:
            return self._answer(entry, 45015, "response out of time limit")
        if body["msgtype"] == "text":
            content = str(body.get("text", {}).get("content", ""))
            if not content or len(content.encode()) > 2048:
                return self._answer(entry, 45002, "content size out of limit")
        if body["msgtype"] == "image" and body.get("image", {}).get("media_id") not in self.media:
            return self._answer(entry, 40007, "invalid media_id")
        self.sent.append(Sent(next(self._ids), "custom", touser, body))
        return self._answer(entry, 0)

    async def _template(self, request: web.Request) -> web.Response:
        entry, body = await self._call(request)
        if (refused := self._token_error(entry)) is not None:
            return refused
        if body is None or not body.get("touser"):
            return self._answer(entry, 40003, "invalid openid")
        if body.get("template_id") not in TEMPLATES:
            return self._answer(entry, 40037, "invalid template_id")
        data = body.get("data")
        if not isinstance(data, dict) or not all(
                isinstance(v, dict) and isinstance(v.get("value"), str) for v in data.values()):
            return self._answer(entry, 47003, "argument invalid! data.value invalid")
        touser = str(body["touser"])
        if touser in self.unfollowed:
            return self._answer(entry, 43004, "require subscribe")
        msgid = next(self._ids)
        self.sent.append(Sent(msgid, "template", touser, body))
        return self._answer(entry, 0, msgid=msgid)

    async def _qrcode(self, request: web.Request) -> web.Response:
        entry, body = await self._call(request)
        if (refused := self._token_error(entry)) is not None:
            return refused
        scene = ((body or {}).get("action_info") or {}).get("scene") or {}
        if (body or {}).get("action_name") != "QR_STR_SCENE" or not scene.get("scene_str"):
            return self._answer(entry, 40053, "invalid action info")
        ticket = "gQ" + secrets.token_urlsafe(24)
        self.qr.append({"ticket": ticket, "scene": scene["scene_str"],
                        "expire_seconds": (body or {}).get("expire_seconds")})
        entry.errcode = 0
        return web.json_response({"ticket": ticket,
                                  "expire_seconds": (body or {}).get("expire_seconds"),
                                  "url": f"http://weixin.qq.com/q/{ticket[:12]}"})

    async def _upload(self, request: web.Request) -> web.Response:
        data = await request.post()
        upload = data.get("media")
        content = upload.file.read() if isinstance(upload, web.FileField) else None
        entry = self._record(request, upload=content)
        if (refused := self._token_error(entry)) is not None:
            return refused
        if not content or entry.query.get("type") not in ("image", "voice", "video", "thumb"):
            return self._answer(entry, 40004, "invalid media type")
        media_id = secrets.token_urlsafe(32)
        self.media[media_id] = content
        entry.errcode = 0
        return web.json_response({"type": entry.query["type"], "media_id": media_id,
                                  "created_at": int(time.time())})

    async def _menu(self, request: web.Request) -> web.Response:
        entry, body = await self._call(request)
        if (refused := self._token_error(entry)) is not None:
            return refused
        problem = _menu_problem(body)
        if problem is not None or body is None:
            return self._answer(entry, *(problem or (40016, "invalid button size")))
        self.menus.append(body)
        return self._answer(entry, 0)


MENU_TYPES = {"click", "view", "scancode_push", "scancode_waitmsg", "pic_sysphoto",
              "pic_photo_or_album", "pic_weixin", "location_select", "media_id", "article_id",
              "article_view_limited", "miniprogram"}


def _menu_problem(body: dict[str, Any] | None) -> tuple[int, str] | None:
    """What `/cgi-bin/menu/create` refuses: 1-3 top buttons (1-5 under each), a name of at
    most 16 bytes (60 under a top button), a known type, a CLICK's key of 1-128 bytes."""
    buttons = (body or {}).get("button")
    if not isinstance(buttons, list) or not 1 <= len(buttons) <= 3:
        return 40016, "invalid button size"
    for button in buttons:
        subs = button.get("sub_button") if isinstance(button, dict) else None
        for item, limit in ([(button, 16)] + [(sub, 60) for sub in subs or []]):
            name = str(item.get("name") or "")
            if not name or len(name.encode()) > limit:
                return 40018, "invalid button name size"
            if item is button and subs:
                if not 1 <= len(subs) <= 5:
                    return 40023, "invalid sub button size"
                continue
            if item.get("type") not in MENU_TYPES:
                return 40017, "invalid button type"
            key = str(item.get("key") or "")
            if item["type"] == "click" and not 1 <= len(key.encode()) <= 128:
                return 40019, "invalid button key size"
    return None


# -- pushes to our server URL ------------------------------------------------------------------

_CREATED = itertools.count(int(time.time()))


def text_xml(openid: str, content: str, *, msg_id: int | None = None,
             created: int | None = None) -> str:
    created = created or next(_CREATED)
    msg_id = msg_id or 6_000_000_000_000_000_000 + created
    return message_xml(ACCOUNT, openid, created, "text",
                       f"<Content><![CDATA[{content}]]></Content><MsgId>{msg_id}</MsgId>")


def event_xml(openid: str, event: str, key: str | None = None, *,
              created: int | None = None) -> str:
    created = created or next(_CREATED)
    key_xml = f"<EventKey><![CDATA[{key}]]></EventKey>" if key is not None else ""
    ticket = "<Ticket><![CDATA[gQticket]]></Ticket>" if event in ("subscribe", "SCAN") and key \
        else ""
    return message_xml(ACCOUNT, openid, created, "event",
                       f"<Event><![CDATA[{event}]]></Event>{key_xml}{ticket}")


@dataclass
class Pusher:
    """Makes WeChat's signed pushes to our `/wechat` route (plain, or AES with `aes_key`)."""

    url: str  # our server's http://127.0.0.1:port/wechat
    token: str = TOKEN
    aes_key: str | None = None
    app_id: str = APP_ID

    def _query(self, nonce: str, timestamp: str) -> dict[str, str]:
        signer = WeChatSigner()
        signer.add_data(self.token, timestamp, nonce)
        return {"signature": signer.signature, "timestamp": timestamp, "nonce": nonce,
                "openid": "o"}

    def signed(self, xml: str) -> tuple[dict[str, str], bytes]:
        """The query and body of a push of `xml`, signed (and encrypted in AES mode)."""
        timestamp, nonce = str(int(time.time())), secrets.token_hex(8)
        query = self._query(nonce, timestamp)
        if self.aes_key is None:
            return query, xml.encode()
        crypto = WeChatCrypto(self.token, self.aes_key, self.app_id)
        envelope = crypto.encrypt_message(xml, nonce, timestamp)
        # The msg_signature WeChat puts in the query is the envelope's MsgSignature.
        start = envelope.index("<MsgSignature><![CDATA[") + len("<MsgSignature><![CDATA[")
        msg_signature = envelope[start:envelope.index("]]>", start)]
        return {**query, "encrypt_type": "aes", "msg_signature": msg_signature}, \
            envelope.encode()

    async def push(self, xml: str, *, signed: tuple[dict[str, str], bytes] | None = None,
                   ) -> tuple[int, str]:
        """POST a push (or a given signed one again: a replay); WeChat's status and body."""
        query, body = signed or self.signed(xml)
        async with aiohttp.ClientSession() as session, session.post(
                self.url, params=query, data=body,
                headers={"Content-Type": "text/xml"}) as response:
            return response.status, await response.text()

    async def verify(self, echostr: str, *, forge: bool = False) -> tuple[int, str]:
        """WeChat's GET check of the server URL."""
        query = self._query(secrets.token_hex(8), str(int(time.time())))
        if forge:
            query["signature"] = "0" * 40
        async with aiohttp.ClientSession() as session, session.get(
                self.url, params={**query, "echostr": echostr}) as response:
            return response.status, await response.text()


# -- our side, configured for the fake ---------------------------------------------------------

TEMPLATES_TOML = """
[default]
template_id = "tmpl-notice"
fields = { first = "title", keyword1 = "rest", remark = "choices" }

[messages."dose.reminder"]
template_id = "tmpl-dose"
fields = { first = "title", keyword1 = "rest", keyword2 = "=每日服药", remark = "choices" }

[messages."dose.reminder_hold_for_visit"]
template_id = "tmpl-dose"
fields = { first = "title", keyword1 = "rest", remark = "choices" }

[messages."dose.follow_up"]
template_id = "tmpl-dose"
fields = { first = "title", keyword1 = "rest", remark = "choices" }

[messages."visit.notice_in_days"]
template_id = "tmpl-visit"
fields = { first = "title", keyword1 = "rest" }

[messages."visit.notice_tomorrow"]
template_id = "tmpl-visit"
fields = { first = "title", keyword1 = "rest" }
"""


def settings(api_url: str, templates: Path | None, *, aes: bool = False) -> Settings:
    """Settings for the WeChat channel against the fake (AES mode with `aes`)."""
    return Settings(wechat_app_id=APP_ID, wechat_app_secret=APP_SECRET,
                    wechat_token=TOKEN, wechat_aes_key=AES_KEY if aes else None,
                    wechat_api_url=api_url, wechat_templates=templates)


fake_wechat = fixture("fake_wechat", FakeWeChatAPI)  # the fake, started (a pytest fixture)

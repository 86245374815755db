"""A fake WeChat Official Account API on 127.0.0.1, and the signed (plain or AES) pushes WeChat
makes to an account's server URL (made with wechatpy's real signer and crypto).

The API part answers as api.weixin.qq.com does: `/cgi-bin/token`, `/cgi-bin/message/custom/send`
(text, image), `/cgi-bin/message/template/send`, `/cgi-bin/qrcode/create`, `/cgi-bin/media/upload`
and `/cgi-bin/menu/create`, every answer a JSON body with `errcode` (0: ok) and HTTP 200. It
records every request and refuses what the real one refuses: an unknown token (40001), a token
it said has expired (42001), a user who does not follow the account (43004), a customer-service
message more than 48 hours after the user's last message (45015), an unknown template (40037);
it can be told to expire the current token once.
"""

from __future__ import annotations

import asyncio
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
from fakes.loopback import LoopbackServer

APP_ID = "wx0123456789abcdef"
APP_SECRET = "wechat-app-secret-0123456789"
TOKEN = "wechatServerToken"
AES_KEY = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopq"  # 43 characters, as WeChat makes them
ACCOUNT = "gh_0123456789ab"  # the account's own id: ToUserName of every push

TEMPLATES = {"tmpl-dose", "tmpl-visit", "tmpl-notice"}


@dataclass
class WeChatRequest:
    """One request to the fake: its path, query and JSON body (or the uploaded file)."""

    path: str
    query: dict[str, str]
    body: dict[str, Any] | None = None
    upload: bytes | None = None
    errcode: int = 0  # what the fake answered


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


class FakeWeChatAPI:
    """The fake server; `base_url` goes into ENGAGE_WECHAT_API_URL. `window` is what the real
    one knows and we track ourselves: each user's last message to the account (set it with
    `user_wrote`), else free-form messages are refused with 45015."""

    def __init__(self, *, app_id: str = APP_ID, secret: str = APP_SECRET) -> None:
        self.app_id = app_id
        self.secret = secret
        self.requests: list[WeChatRequest] = []
        self.sent: list[Sent] = []
        self.qr: list[dict[str, Any]] = []
        self.menus: list[dict[str, Any]] = []
        self.media: dict[str, bytes] = {}
        self.tokens: list[str] = []  # every token handed out, in order
        self.unfollowed: set[str] = set()  # openids that do not follow the account
        self.last_message: dict[str, float] = {}  # openid -> when they last wrote (time.time())
        self.window_check = False  # refuse custom sends outside 48 h (when user_wrote is used)
        self._expired: set[str] = set()
        self._expire_next = 0
        self._ids = itertools.count(1_000_000_001)
        self._server = LoopbackServer()
        self.base_url = ""

    async def start(self) -> str:
        app = web.Application()
        app.router.add_get("/cgi-bin/token", self._token)
        app.router.add_post("/cgi-bin/message/custom/send", self._custom)
        app.router.add_post("/cgi-bin/message/template/send", self._template)
        app.router.add_post("/cgi-bin/qrcode/create", self._qrcode)
        app.router.add_post("/cgi-bin/media/upload", self._upload)
        app.router.add_post("/cgi-bin/menu/create", self._menu)
        self.base_url = await self._server.serve(app)
        return self.base_url

    async def stop(self) -> None:
        await self._server.close()

    # -- test controls -----------------------------------------------------------------------
    def expire_token(self, times: int = 1) -> None:
        """The next `times` calls with the current token answer 42001, and the token stays
        expired (a token another process replaced answers 40001 the same way)."""
        self._expire_next += times

    def token_calls(self) -> int:
        return sum(1 for r in self.requests if r.path == "/cgi-bin/token")

    def sent_to(self, openid: str | None = None, kind: str | None = None) -> list[Sent]:
        return [s for s in self.sent if (openid is None or s.touser == openid)
                and (kind is None or s.kind == kind)]

    async def wait_for(self, count: int = 1, within: float = 5.0, *,
                       openid: str | None = None, kind: str | None = None) -> list[Sent]:
        """Wait until `count` messages (to `openid`, of `kind`) were accepted."""
        deadline = asyncio.get_running_loop().time() + within
        while len(self.sent_to(openid, kind)) < count:
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"only {len(self.sent_to(openid, kind))} WeChat messages "
                                     f"accepted: {[(s.kind, s.text) for s in self.sent]}")
            await asyncio.sleep(0.01)
        return self.sent_to(openid, kind)

    # -- the API -----------------------------------------------------------------------------
    def _record(self, request: web.Request, body: dict[str, Any] | None = None,
                upload: bytes | None = None) -> WeChatRequest:
        entry = WeChatRequest(request.path, dict(request.query), body, upload)
        self.requests.append(entry)
        return entry

    def _answer(self, entry: WeChatRequest, errcode: int, errmsg: str = "ok",
                **extra: Any) -> web.Response:
        entry.errcode = errcode
        return web.json_response({"errcode": errcode, "errmsg": errmsg, **extra})

    def _token_error(self, entry: WeChatRequest) -> web.Response | None:
        token = entry.query.get("access_token", "")
        if token in self._expired:
            return self._answer(entry, 42001, "access_token expired")
        if token not in self.tokens:
            return self._answer(entry, 40001, "invalid credential, access_token is invalid")
        if self._expire_next:
            self._expire_next -= 1
            self._expired.add(token)
            return self._answer(entry, 42001, "access_token expired")
        return None

    async def _token(self, request: web.Request) -> web.Response:
        entry = self._record(request)
        if entry.query.get("grant_type") != "client_credential":
            return self._answer(entry, 40002, "invalid grant_type")
        if entry.query.get("appid") != self.app_id:
            return self._answer(entry, 40013, "invalid appid")
        if entry.query.get("secret") != self.secret:
            return self._answer(entry, 40001, "invalid credential, secret is invalid")
        token = secrets.token_urlsafe(48)
        self.tokens.append(token)
        entry.errcode = 0
        # The real one answers without errcode on success.
        return web.json_response({"access_token": token, "expires_in": 7200})

    async def _json(self, request: web.Request) -> tuple[WeChatRequest, dict[str, Any] | None]:
        try:
            body = await request.json()
        except ValueError:
            body = None
        return self._record(request, body if isinstance(body, dict) else None), (
            body if isinstance(body, dict) else None)

    async def _custom(self, request: web.Request) -> web.Response:
        entry, body = await self._json(request)
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
        entry, body = await self._json(request)
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
        entry, body = await self._json(request)
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
        entry, body = await self._json(request)
        if (refused := self._token_error(entry)) is not None:
            return refused
        problem = _menu_problem(body)
        if problem is not None:
            return self._answer(entry, *problem)
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
    return (f"<xml><ToUserName><![CDATA[{ACCOUNT}]]></ToUserName>"
            f"<FromUserName><![CDATA[{openid}]]></FromUserName>"
            f"<CreateTime>{created}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
            f"<Content><![CDATA[{content}]]></Content><MsgId>{msg_id}</MsgId></xml>")


def event_xml(openid: str, event: str, key: str | None = None, *,
              created: int | None = None) -> str:
    created = created or next(_CREATED)
    key_xml = f"<EventKey><![CDATA[{key}]]></EventKey>" if key is not None else ""
    ticket = "<Ticket><![CDATA[gQticket]]></Ticket>" if event in ("subscribe", "SCAN") and key \
        else ""
    return (f"<xml><ToUserName><![CDATA[{ACCOUNT}]]></ToUserName>"
            f"<FromUserName><![CDATA[{openid}]]></FromUserName>"
            f"<CreateTime>{created}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
            f"<Event><![CDATA[{event}]]></Event>{key_xml}{ticket}</xml>")


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

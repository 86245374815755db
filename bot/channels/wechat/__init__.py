"""WeChat Official Account (服务号) for patients: the send adapter and, in
`bot.channels.wechat.inbound`, the server URL (`/wechat`) that receives messages and events.

A patient's address is their openid, a contact point (`storage.models.ContactPoint`) made when
they link: by scanning a parametric QR code whose scene is their link code, or by sending the
code. What goes how (`WeChatChannel.send`):
- a message we start (a dose reminder or follow-up, a visit notice: `templates.PROACTIVE`) is a
  template message, its fields filled from the rendered catalogue text (`templates`);
- anything else (replies, safety messages) is a customer-service text message while the 48-hour
  window since the patient's last message is open, else a template message (the message's own
  template, or the default one); a customer-service send WeChat refuses for the window or its
  count (45015, 45047) goes as a template message at once;
- choices are printed as numbered words after the text, as by SMS (`messages.sms.choice_line`):
  what is printed is what the keyword parser understands when typed back.

Sending uses aiohttp against the documented endpoints (`/cgi-bin/token`,
`/cgi-bin/message/custom/send`, `/cgi-bin/message/template/send`, `/cgi-bin/qrcode/create`,
`/cgi-bin/media/upload`, `/cgi-bin/menu/create`), not wechatpy's client, because (1) that
client refreshes the access token itself, per process, when WeChat answers 40001/42001
(`wechatpy.client.base`), which defeats the one token every worker shares through the database
(`storage.tokens`: a token is rate-limited and a refresh by one worker invalidates the
others'); (2) it is synchronous (`requests`), so each send would take a thread (not measured
for WeChat; the same choice for WeCom was measured by bench/wecom_send.py, see
docs/benchmarks.md and docs/wechat.md). wechatpy does the protocol
parts: the signature check, AES message crypto and XML parsing (`inbound`).

errcodes: 40001/42001/40014 (token refused) replace the token once and retry; 43004 (the user
does not follow us), 40003 (not our user) and 43019/43101 (blocked us or refused) are
unreachable; -1, 45009 and 45011 are busy (retried later); anything else is permanent.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

import aiohttp
from sqlalchemy import select

from bot.channels.tencent import TencentAPI, TencentError
from bot.channels.wechat.templates import PROACTIVE, Template, Templates
from messages import sms as sms_text
from messages.channel import (
    OutgoingMessage,
    PermanentSendError,
    SendResult,
    TransientSendError,
)
from storage.db import Database
from storage.models import ContactPoint, OutboundMessage
from storage.tokens import TokenUnavailableError

log = logging.getLogger(__name__)

WECHAT = "wechat"
API_URL = "https://api.weixin.qq.com"
WINDOW = timedelta(hours=48)  # free-form replies only this long after the user's last message
TEXT_BYTES = 2048  # a customer-service text WeChat takes whole
TOKEN_REFUSED = frozenset({40001, 40014, 42001})
UNREACHABLE = frozenset({43004, 40003, 43019, 43101})
OUT_OF_WINDOW = frozenset({45015, 45047})  # too late, or too many, for a free-form message
BUSY = frozenset({-1, 45009, 45011})
QR_SECONDS = 30 * 24 * 3600  # the longest a temporary QR code lives


def token_name(app_id: str) -> str:
    return f"wechat:{app_id}"


def qr_image_url(ticket: str) -> str:
    """Where the QR code of a ticket is shown (a printable image)."""
    return f"https://mp.weixin.qq.com/cgi-bin/showqrcode?ticket={quote(ticket)}"


def fit_bytes(text: str, limit: int = TEXT_BYTES) -> str:
    """The text cut to `limit` UTF-8 bytes with an ellipsis."""
    if len(text.encode()) <= limit:
        return text
    cut = text.encode()[:limit - 3].decode(errors="ignore")
    return cut + "…"


class WeChatError(TencentError):
    """WeChat answered with a non-zero errcode."""

    channel = WECHAT


class WeChatAPI(TencentAPI):
    """The documented HTTP API with one shared access token (`bot.channels.tencent`)."""

    error = WeChatError
    token_refused = TOKEN_REFUSED

    def __init__(self, db: Database, now: Callable[[], datetime], *, app_id: str,
                 app_secret: str, api_url: str = API_URL, timeout: float = 10.0) -> None:
        super().__init__(db, now, api_url=api_url, timeout=timeout)
        self.app_id = app_id
        self._secret = app_secret

    @property
    def token_name(self) -> str:
        return token_name(self.app_id)

    async def _fetch_token(self) -> tuple[str, int]:
        body = await self._request("GET", "/cgi-bin/token", params={
            "grant_type": "client_credential", "appid": self.app_id, "secret": self._secret})
        return str(body["access_token"]), int(body.get("expires_in", 7200))

    def _check_status(self, response: aiohttp.ClientResponse, path: str) -> None:
        if response.status >= 500:
            raise TransientSendError(f"wechat {path}: HTTP {response.status}")
        if response.status == 429:
            raise TransientSendError(f"wechat {path}: HTTP 429", retry_after=60.0)
        if response.status != 200:
            raise PermanentSendError(f"wechat {path}: HTTP {response.status}",
                                     code=str(response.status))

    def _not_an_object(self, path: str) -> Exception:
        return TransientSendError(f"wechat {path}: not a JSON object")

    async def create_qr(self, scene: str, *, seconds: int = QR_SECONDS) -> dict[str, Any]:
        """A temporary parametric QR code whose scan carries `scene` (a link code)."""
        return await self.call("/cgi-bin/qrcode/create", json={
            "expire_seconds": min(seconds, QR_SECONDS), "action_name": "QR_STR_SCENE",
            "action_info": {"scene": {"scene_str": scene}}})

    async def create_menu(self, menu: dict[str, Any]) -> None:
        """Replace the account's custom menu (`/cgi-bin/menu/create`, as wechatpy's
        `WeChatMenu.create` posts it: the `{"button": [...]}` body as JSON)."""
        await self.call("/cgi-bin/menu/create", json=menu)


class WeChatChannel:
    """`messages.channel.Channel` for WeChat (see the module's docstring)."""

    name = WECHAT

    def __init__(self, api: WeChatAPI, templates: Templates) -> None:
        self.api = api
        self.templates = templates

    async def close(self) -> None:
        await self.api.close()

    async def send(self, message: OutgoingMessage) -> SendResult:
        message_id, last_inbound = await self._context(message)
        choices = sms_text.choice_line([(c.sms_word, c.label) for c in message.choices],
                                       message.language or "zh")
        window_open = (last_inbound is not None
                       and self.api.now() - last_inbound < WINDOW)
        template = self.templates.own(message_id)
        try:
            if message_id in PROACTIVE and template is not None:
                return await self._template(message, template, choices)
            if window_open:
                try:
                    return await self._custom(message, choices)
                except WeChatError as exc:
                    if exc.errcode not in OUT_OF_WINDOW:
                        raise
                    log.info("wechat: message %s out of the reply window (%s): as a template",
                             message.message_id, exc.errcode)
            fallback = self.templates.for_message(message_id)
            if fallback is None:
                raise PermanentSendError(
                    f"wechat: {message_id} outside the 48-hour window and no template for it",
                    code="no_template")
            return await self._template(message, fallback, choices)
        except WeChatError as exc:
            raise _send_error(exc) from exc
        except TokenUnavailableError as exc:
            raise TransientSendError(str(exc)) from exc
        except TimeoutError as exc:
            raise TransientSendError("wechat: no answer", maybe_sent=True) from exc
        except aiohttp.ClientError as exc:
            raise TransientSendError(f"wechat: {type(exc).__name__}: {exc}") from exc

    async def _context(self, message: OutgoingMessage) -> tuple[str, datetime | None]:
        """The outbox row's catalogue message id, and the recipient's last message to us."""
        async with self.api.db.read() as session:
            message_id = (await session.execute(select(OutboundMessage.template_id).where(
                OutboundMessage.id == message.message_id))).scalar_one_or_none()
            last = (await session.execute(select(ContactPoint.last_inbound_at).where(
                ContactPoint.channel == WECHAT, ContactPoint.address == message.address))
            ).scalar_one_or_none()
        return message_id or "", last

    async def _custom(self, message: OutgoingMessage, choices: str) -> SendResult:
        text = f"{message.text}\n{choices}" if choices else message.text
        body = await self.api.call("/cgi-bin/message/custom/send", json={
            "touser": message.address, "msgtype": "text",
            "text": {"content": fit_bytes(text)}})
        return SendResult(provider_id=str(body.get("msgid") or f"custom:{message.message_id}"))

    async def _template(self, message: OutgoingMessage, template: Template,
                        choices: str) -> SendResult:
        body = await self.api.call("/cgi-bin/message/template/send", json={
            "touser": message.address, "template_id": template.template_id,
            "data": template.data(message.text, choices)})
        return SendResult(provider_id=str(body.get("msgid") or ""))


def _send_error(exc: WeChatError) -> Exception:
    if exc.errcode in UNREACHABLE:
        return PermanentSendError(str(exc), unreachable=True, code=str(exc.errcode))
    if exc.errcode in BUSY:
        return TransientSendError(str(exc), retry_after=60.0)
    return PermanentSendError(str(exc), code=str(exc.errcode))

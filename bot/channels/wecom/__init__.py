"""WeCom (企业微信) for site staff: the send adapter (one self-built app, messages to a member by
userid) and, in `bot.channels.wecom.callback`, the app's callback URL (`/wecom`).

Sending talks to the documented endpoints with aiohttp (not wechatpy's client; see
docs/wecom.md for why): `/cgi-bin/gettoken`, `/cgi-bin/message/send` (text, image,
template_card), `/cgi-bin/media/upload`, `/cgi-bin/message/update_template_card`. The access
token is one for every worker, kept in the database by `storage.tokens`; a token WeCom refuses
(40014 invalid, 42001 expired) is replaced once and the call made again.

What goes how:
- a message with choices (a page: `alert:ack:N`, `alert:resolve:N`; an `/alerts` item) is a
  template card of type `button_interaction` whose buttons carry the action strings as keys; a
  text longer than a card shows goes as a text message first, then the card with the buttons;
- any other message is a text message (at most 2,048 bytes, cut with an ellipsis);
- a picture (the digest's chart) is uploaded as media and sent as an image after the text.
"""

from __future__ import annotations

import contextvars
import logging
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import aiohttp

from bot.channels.tencent import TencentAPI, TencentError
from messages import catalogue
from messages.channel import (
    Choice,
    OutgoingMessage,
    PermanentSendError,
    SendResult,
    TransientSendError,
)
from storage.db import Database
from storage.tokens import MARGIN, TokenUnavailableError

log = logging.getLogger(__name__)

WECOM = "wecom"
API_URL = "https://qyapi.weixin.qq.com"
TEXT_BYTES = 2048  # WeCom refuses a longer text message (44004)
TITLE_CHARS = 36  # a card's main title (WeCom's limit for showing it whole)
SUBTITLE_CHARS = 112  # a card's sub-title text
BUTTON_CHARS = 20  # a card button's text (WeCom advises 10 Chinese characters)
MAX_BUTTONS = 6
# Sending pace: WeCom allows an app 30 messages a minute to one member (and far more in all).
RATE = 50.0
MEMBER_RATE = 0.5
# errcodes: a token WeCom refuses (replaced once, the call made again) ...
TOKEN_REFUSED = frozenset({40014, 42001})
# ... a recipient who cannot get the app's messages (not a member, outside its visible range,
# left the company or not activated) ...
UNREACHABLE = frozenset({81013, 60111, 60011, 82001, 81025, 60103})
# ... WeCom busy or our call rate (a minute's pause), our credentials, our server's IP not in
# the app's trusted list, our app disabled: keep the message, try later.
BUSY = frozenset({-1, 45009, 45033, 45047})
OURS = frozenset({40001, 40013, 40056, 41001, 48002, 60020, 301002, 50001})


HOLD = min(timedelta(seconds=60), MARGIN / 2)


# The flag of the send running in this task: set once a message/send request is on the wire.
_written: contextvars.ContextVar[list[bool] | None] = contextvars.ContextVar(
    "wecom_written", default=None)


async def _on_headers_sent(session: Any, context: Any, params: Any) -> None:
    flag = _written.get()
    if flag is not None and params.url.path.endswith("/message/send"):
        flag[0] = True


def token_name(corp_id: str, agent_id: int) -> str:
    """The row of `provider_tokens` holding the app's access token."""
    return f"wecom:{corp_id}:{agent_id}"


def fit_bytes(text: str, limit: int = TEXT_BYTES) -> str:
    """`text` cut with an ellipsis to at most `limit` bytes of UTF-8 (WeCom counts bytes)."""
    if len(text.encode()) <= limit:
        return text
    low, high = 0, len(text)
    while low < high:  # the most characters whose shortened text fits
        middle = (low + high + 1) // 2
        if len(catalogue.shortened(text, middle).encode()) <= limit:
            low = middle
        else:
            high = middle - 1
    return catalogue.shortened(text, low)


def card(text: str, choices: tuple[Choice, ...], task_id: str) -> tuple[dict[str, Any], bool]:
    """The template card (button_interaction) of a message with choices, and whether the text
    fits on it (when not, it is sent whole as a text message before the card)."""
    lines = [line for line in text.strip().splitlines() if line.strip()] or [text.strip() or "-"]
    title, rest = lines[0].strip(), "\n".join(line.strip() for line in lines[1:])
    fits = len(title) <= TITLE_CHARS and len(rest) <= SUBTITLE_CHARS
    body: dict[str, Any] = {
        "card_type": "button_interaction",
        "main_title": {"title": catalogue.shortened(title, TITLE_CHARS)},
        "task_id": task_id,
        "button_list": [{"text": catalogue.shortened(c.label, BUTTON_CHARS), "style": 1 if n == 0
                         else 2, "key": c.action} for n, c in enumerate(choices[:MAX_BUTTONS])],
    }
    if rest:
        body["sub_title_text"] = catalogue.shortened(rest, SUBTITLE_CHARS)
    return body, fits


class WeComError(TencentError):
    """An API answer with a non-zero errcode."""

    channel = WECOM

    @classmethod
    def describe(cls, path: str, errcode: int, errmsg: str) -> str:
        return f"wecom {path}: {errcode} {errmsg}"


class WeComAPI(TencentAPI):
    """The app's API calls, with the shared access token (refreshed once when refused:
    `bot.channels.tencent`)."""

    error = WeComError
    token_refused = TOKEN_REFUSED

    def __init__(self, db: Database, now: Callable[[], datetime], *, corp_id: str,
                 agent_id: int, secret: str, api_url: str = API_URL,
                 timeout: float = 10.0) -> None:
        super().__init__(db, now, api_url=api_url, timeout=timeout)
        self.corp_id = corp_id
        self.agent_id = agent_id
        self.secret = secret
        self._held: tuple[str, datetime] | None = None  # the shared token, and till when

    @property
    def token_name(self) -> str:
        return token_name(self.corp_id, self.agent_id)

    def _session_options(self) -> dict[str, Any]:
        trace = aiohttp.TraceConfig()
        trace.on_request_headers_sent.append(_on_headers_sent)
        return {"trace_configs": [trace]}

    async def _fetch_token(self) -> tuple[str, int]:
        answer = await self._request("GET", "/cgi-bin/gettoken", params={
            "corpid": self.corp_id, "corpsecret": self.secret})
        return str(answer["access_token"]), int(answer.get("expires_in") or 7200)

    async def token(self, rejected: str | None = None) -> str:
        """The shared token (storage.tokens), held here for HOLD so a send does not cost a
        database write; a refused one is replaced through the database at once."""
        moment = self.now()
        if rejected is None and self._held is not None and self._held[1] > moment:
            return self._held[0]
        value = await super().token(rejected)
        # Shorter than storage.tokens' renewal margin: a held token never outlives its expiry.
        self._held = (value, moment + HOLD)
        return value

    def _check_status(self, response: aiohttp.ClientResponse, path: str) -> None:
        if response.status >= 400:
            raise aiohttp.ClientResponseError(response.request_info, response.history,
                                              status=response.status,
                                              message=response.reason or "")


class WeComChannel:
    """Sends outbox messages to staff members' WeCom userids, mapping errors to the contract."""

    name = WECOM

    def __init__(self, api: WeComAPI) -> None:
        self.api = api

    async def close(self) -> None:
        await self.api.close()

    async def send(self, message: OutgoingMessage) -> SendResult:
        """A card with buttons, or a text; then the picture, if any."""
        userid = message.address.strip()
        if not userid:
            raise PermanentSendError("no WeCom userid to send to", unreachable=True)
        # Whether a part has gone, or a message/send request was written: a failure after
        # that may mean WeCom has it (a resend may duplicate it).
        written = False
        wire = [False]
        reset = _written.set(wire)
        try:
            if message.choices:
                task_id = f"engage{message.message_id}-{secrets.token_hex(4)}"
                body, fits = card(message.text, message.choices, task_id)
                if not fits:
                    await self._send(userid, {"msgtype": "text", "text": {
                        "content": fit_bytes(message.text)},
                        # A retry of the whole message within 30 min does not repeat the text.
                        "enable_duplicate_check": 1, "duplicate_check_interval": 1800})
                    written = True
                sent = await self._send(userid, {"msgtype": "template_card",
                                                 "template_card": body})
            else:
                sent = await self._send(userid, {"msgtype": "text", "text": {
                    "content": fit_bytes(message.text)}})
            written = True
            if message.image is not None:
                media = await self._upload(message.image)
                await self._send(userid, {"msgtype": "image", "image": {"media_id": media}})
        except WeComError as exc:
            raise _api_error(exc) from None
        except TokenUnavailableError as exc:
            raise TransientSendError(f"wecom token: {exc}", retry_after=30.0) from None
        except TimeoutError:
            raise TransientSendError("wecom timeout", maybe_sent=written or wire[0]) from None
        except aiohttp.ClientConnectorError as exc:
            raise TransientSendError(f"wecom unreachable: {exc.os_error}",
                                     maybe_sent=written) from None
        except aiohttp.ClientResponseError as exc:
            raise TransientSendError(f"wecom HTTP {exc.status}", maybe_sent=written) from None
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            raise TransientSendError(f"wecom network: {type(exc).__name__}",
                                     maybe_sent=written or wire[0]) from None
        finally:
            _written.reset(reset)
        return SendResult(provider_id=str(sent.get("msgid") or ""), status="sent")

    async def _send(self, userid: str, body: dict[str, Any]) -> dict[str, Any]:
        answer = await self.api.call("/cgi-bin/message/send", json={
            "touser": userid, "agentid": self.api.agent_id, "safe": 0, **body})
        if answer.get("invaliduser"):  # taken for nobody: the member is out of the app's range
            raise WeComError("/cgi-bin/message/send", 81013,
                             f"invalid user {answer.get('invaliduser')}")
        return answer

    async def _upload(self, image: bytes) -> str:
        def form() -> aiohttp.FormData:
            data = aiohttp.FormData()
            data.add_field("media", image, filename="chart.png", content_type="image/png")
            return data

        answer = await self.api.call("/cgi-bin/media/upload", params={"type": "image"},
                                     data=form)
        return str(answer["media_id"])

    async def update_card(self, userid: str, response_code: str, replace_name: str) -> None:
        """After a button was handled: the card's buttons become one grey `replace_name`
        (cosmetic; a failure is logged, never retried)."""
        try:
            await self.api.call("/cgi-bin/message/update_template_card", json={
                "userids": [userid], "agentid": self.api.agent_id,
                "response_code": response_code,
                "button": {"replace_name": catalogue.shortened(replace_name, BUTTON_CHARS)}})
        except Exception as exc:  # the handling is committed; this is only the card's look
            log.info("wecom card update failed: %s", exc)


def _api_error(exc: WeComError) -> Exception:
    code, reason = exc.errcode, str(exc)
    if code in UNREACHABLE:
        return PermanentSendError(reason, unreachable=True, code=str(code))
    if code in BUSY:
        return TransientSendError(reason, retry_after=60.0 if code != -1 else 5.0)
    if code in OURS or code in TOKEN_REFUSED:
        # Our configuration (secret, agent id, trusted IP), not the recipient: keep the message.
        return TransientSendError(reason, retry_after=60.0)
    return PermanentSendError(reason, code=str(code))

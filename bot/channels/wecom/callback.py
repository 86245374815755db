"""The WeCom app's callback URL, `/wecom` (what a member types in the app, the buttons they
press on a template card).

- GET is WeCom checking the URL when it is saved: `msg_signature` over the token, `timestamp`,
  `nonce` and the encrypted `echostr`; the answer is the decrypted echostr.
- POST is a push: the body's `Encrypt` (AES, key from the app's EncodingAESKey) signed the same
  way. A push whose signature or encryption is wrong is refused with 403 and stores nothing.

Both use wechatpy's enterprise crypto and parser. A push is stored (committed) before it is
answered, once: a message by its MsgId, an event by FromUserName + CreateTime + EventKey, so
WeCom's retries and any replay make one row. It is answered within 5 s whatever the handling
costs: handled at once, and if that takes longer than `answer_within` the answer goes and the
handling goes on (or, after a crash, `Conversation.handle_pending` takes the stored row).

A typed text goes to the conversation core as a staff member's text (`/alerts`, `/ack 12`...,
as on Telegram); a card's button is its key, the action string (`alert:ack:12`), handled with
the same site-scope rules as a Telegram button. Replies go back by WeCom to the member. After a
button acknowledged or resolved an alert, the card's buttons become one grey label.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from sqlalchemy import select
from wechatpy.enterprise import parse_message
from wechatpy.enterprise.crypto import WeChatCrypto

from bot import inbox
from bot.channels.wecom import WECOM, WeComChannel
from bot.conversation import Conversation, Handled, InboundEvent
from messages import catalogue
from storage.models import Alert, Staff
from study import alerts, contacts
from trial.clock import Clock

log = logging.getLogger(__name__)

PATH = "/wecom"
CARD_EVENT = "template_card_event"
# Button keys we send: staff actions only (a key is never a patient's action or a link code).
ACTION = re.compile(r"(alert|page):[a-z_]{1,24}(:[A-Za-z0-9_-]{1,24}){0,2}")


def _received() -> web.Response:
    """WeCom takes an empty answer as "received, nothing to reply" (a new one each time: an
    aiohttp response is sent once)."""
    return web.Response(text="")


def action_of(key: str) -> str:
    """The action a card's button carries, or "invalid" when it is not one of ours."""
    return key if len(key.encode()) <= 64 and ACTION.fullmatch(key) else "invalid"


def event_id(sender: str, create_time: str, key: str) -> str:
    """An event's own id (events have no MsgId): WeCom repeats all three on a retry."""
    digest = hashlib.sha256(f"{sender}\n{create_time}\n{key}".encode()).hexdigest()
    return f"ev:{digest[:48]}"


@dataclass
class WeComCallback:
    """What the route uses: the conversation core, the clock, the app's callback crypto
    (token, EncodingAESKey, corp id), and the channel for the card follow-up."""

    conversation: Conversation
    clock: Clock
    crypto: WeChatCrypto
    channel: WeComChannel | None = None
    answer_within: float = 3.0  # WeCom waits 5 s, then retries
    _running: set[asyncio.Task[None]] = field(default_factory=set)

    @classmethod
    def create(cls, conversation: Conversation, clock: Clock, *, token: str, aes_key: str,
               corp_id: str, channel: WeComChannel | None = None) -> WeComCallback:
        return cls(conversation, clock, WeChatCrypto(token, aes_key, corp_id), channel)

    def routes(self) -> list[web.RouteDef]:
        """GET and POST `/wecom`, for the HTTP server to mount."""
        return [web.get(PATH, self.verify), web.post(PATH, self.push)]

    async def idle(self) -> None:
        """Wait for handling that outlived its answer (tests, shutdown)."""
        while self._running:
            await asyncio.gather(*list(self._running), return_exceptions=True)

    # -- the routes ----------------------------------------------------------------------
    async def verify(self, request: web.Request) -> web.Response:
        """URL verification: the decrypted echostr if the signature is right, else 403."""
        query = request.query
        try:
            echo = self.crypto.check_signature(query["msg_signature"], query["timestamp"],
                                               query["nonce"], query["echostr"])
        except Exception:  # a missing field, a wrong signature, a wrong corp id, not AES
            log.warning("rejected WeCom URL verification: bad signature or echostr")
            raise web.HTTPForbidden() from None
        return web.Response(text=str(echo))

    async def push(self, request: web.Request) -> web.Response:
        """A push: checked, decrypted, stored, answered; handled before the answer if quick."""
        query = request.query
        body = await request.text()
        try:
            plain = self.crypto.decrypt_message(body, query["msg_signature"],
                                                query["timestamp"], query["nonce"])
            message = parse_message(plain)
        except Exception:  # no signature, a wrong one, not our corp, not XML, not AES
            log.warning("rejected WeCom push: bad signature or body")
            raise web.HTTPForbidden() from None
        if message is None:
            raise web.HTTPForbidden()
        data: dict[str, Any] = dict(message._data)
        event = self._event(data)
        if event is None:  # an event we do not act on (entering the app...): kept, answered
            await self._store_other(data)
            return _received()
        # Stored and committed before anything is answered: a crash now loses nothing.
        await self.conversation.store_all([event])
        task = asyncio.create_task(self._handle(event))
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        await asyncio.wait({task}, timeout=self.answer_within)
        return _received()

    # -- what a push means ---------------------------------------------------------------
    def _event(self, data: dict[str, Any]) -> InboundEvent | None:
        sender = str(data.get("FromUserName") or "")
        kind = str(data.get("MsgType") or "").lower()
        now = self.clock.now()
        payload: dict[str, Any] = {"agent_id": str(data.get("AgentID") or ""), "msg_type": kind}
        if kind == "event":
            if str(data.get("Event") or "").lower() != CARD_EVENT:
                return None
            key = str(data.get("EventKey") or "")
            payload |= {"task_id": str(data.get("TaskId") or ""),
                        "response_code": str(data.get("ResponseCode") or ""), "key": key[:200]}
            return InboundEvent(channel=WECOM, external_id=event_id(
                sender, str(data.get("CreateTime") or ""), key), sender=sender, text="",
                action=action_of(key), received_at=now, payload=payload)
        msg_id = str(data.get("MsgId") or "")
        if not msg_id or not sender:
            return None
        # A text is the member's words; anything else (a picture, a voice note) says nothing
        # a staff command could mean: the help answers it.
        text = str(data.get("Content") or "") if kind == "text" else ""
        return InboundEvent(channel=WECOM, external_id=msg_id, sender=sender, text=text,
                            action=None, received_at=now, payload=payload)

    async def _store_other(self, data: dict[str, Any]) -> None:
        sender = str(data.get("FromUserName") or "")
        name = str(data.get("Event") or data.get("MsgType") or "")
        await inbox.store_raw(self.conversation.db, channel=WECOM,
                              external_id=event_id(sender, str(data.get("CreateTime") or ""),
                                                   name),
                              raw=data, outcome="ignored",
                              now=self.clock.now(), sender=sender)

    async def _handle(self, event: InboundEvent) -> None:
        try:
            handled = await inbox.handle_firmly(self.conversation, event)
            if handled is not None and event.action and event.action != "invalid":
                await self._follow_up(event, handled)
        except Exception:  # stored: handled at the next sweep (or start-up)
            log.exception("wecom push %s not handled now; it stays stored", event.external_id)

    async def _follow_up(self, event: InboundEvent, handled: Handled) -> None:
        """The pressed card shows what became of its alert (cosmetic; only for the member who
        acted, and only when the action took)."""
        code = str(event.payload.get("response_code") or "")
        verb, _, number = str(event.action).removeprefix("alert:").partition(":")
        if (self.channel is None or handled.duplicate or not code
                or verb not in ("ack", "resolve") or not number.isdigit()):
            return
        async with self.conversation.db.read() as session:
            point = await contacts.find(session, WECOM, event.sender)
            staff = await contacts.owner(session, point) if point is not None else None
            alert = (await session.execute(select(Alert).where(
                Alert.id == int(number)))).scalar_one_or_none()
        if not isinstance(staff, Staff) or alert is None:
            return
        if alert.status == alerts.RESOLVED and alert.resolved_by == staff.id:
            label = "staff.card_resolved"
        elif alert.status != alerts.OPEN and alert.acknowledged_by == staff.id:
            label = "staff.card_acknowledged"
        else:
            return
        text = catalogue.render(label, catalogue.reader_language(staff.language), id=alert.id)
        await self.channel.update_card(event.sender, code, text)

"""Twilio's inbound routes: SMS to our number and delivery status callbacks, each POSTed form
checked against its `X-Twilio-Signature` for our public URL (never the request's Host)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from aiohttp import web
from twilio.request_validator import RequestValidator
from twilio.twiml.messaging_response import MessagingResponse

from bot.channels.twilio import mms, vocabulary
from bot.conversation import SMS, Conversation, InboundEvent
from storage.db import Database
from study import delivery_status
from trial.clock import Clock

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Twilio-Signature"


def sms_event(form: dict[str, str], now: datetime) -> InboundEvent:
    """An inbound SMS as the conversation core takes it, with what Twilio made of it: the
    keyword of its Advanced Opt-Out (OptOutType, in any language Twilio knows) and whether it
    answered the message itself (its own STOP/START/HELP words)."""
    body, opt_out_type = form.get("Body", ""), form.get("OptOutType", "")
    return InboundEvent(
        channel=SMS, external_id=form.get("MessageSid", ""), sender=form.get("From", ""),
        text=body, action=None, received_at=now,
        payload={"to": form.get("To", ""), "opt_out_type": opt_out_type,
                 "num_media": form.get("NumMedia", "0")},
        media=mms.media_of(form),
        keyword=vocabulary.OPT_OUT_TYPES.get(opt_out_type.upper()),
        answered_by_provider=vocabulary.answered_by_twilio(body, opt_out_type))


@dataclass(frozen=True)
class TwilioInbound:
    """What the routes use: the conversation core, the database, the clock, the public URL
    Twilio signs, and the auth token it signs with."""

    conversation: Conversation
    db: Database
    clock: Clock
    public_url: str
    auth_token: str

    def routes(self) -> list[web.RouteDef]:
        """`/twilio/sms` and `/twilio/status`, for the HTTP server to mount."""
        return [web.post("/twilio/sms", self.sms), web.post("/twilio/status", self.status)]

    async def _signed_form(self, request: web.Request) -> dict[str, str]:
        """The POSTed form if its Twilio signature is valid for our public URL, else 403."""
        try:
            form = await request.post()
        except UnicodeDecodeError:
            # Twilio always sends UTF-8: anything else is not Twilio, and not worth a 500
            # (which would log a traceback per request and invite retries).
            raise web.HTTPBadRequest(text="form is not UTF-8") from None
        signature = request.headers.get(SIGNATURE_HEADER, "")
        # The URL Twilio signed is the public one, never what this request's Host header says.
        url = self.public_url + request.path_qs
        if not signature or not RequestValidator(self.auth_token).validate(url, form, signature):
            log.warning("rejected %s: bad or missing Twilio signature", request.path)
            raise web.HTTPForbidden()
        return {key: str(value) for key, value in form.items()}

    async def sms(self, request: web.Request) -> web.Response:
        """Inbound SMS: stored and handled once per MessageSid, answered with empty TwiML."""
        form = await self._signed_form(request)
        sid, sender = form.get("MessageSid", ""), form.get("From", "")
        if not sid or not sender:
            raise web.HTTPBadRequest(text="MessageSid and From are required")
        await self.conversation.handle(sms_event(form, self.clock.now()))
        # Replies go through the outbox (rate limits, retries, audit), never inline in TwiML.
        return web.Response(text=str(MessagingResponse()), content_type="application/xml")

    async def status(self, request: web.Request) -> web.Response:
        """A delivery status callback: the message's status only ever moves forward, and only
        a status that moved it has consequences for the patient."""
        form = await self._signed_form(request)
        sid, word = form.get("MessageSid", ""), form.get("MessageStatus", "").lower()
        if not sid or not word:
            raise web.HTTPBadRequest(text="MessageSid and MessageStatus are required")
        text = form.get("ErrorCode", "")
        code = int(text) if text.isdigit() else 0
        message_id = request.query.get("message_id", "")
        status = vocabulary.state(word)  # the outbox's word from here on
        async with self.db.write() as session:
            await delivery_status.apply(
                session, provider_id=sid, status=status, detail=vocabulary.detail(code),
                fate=vocabulary.fate(status, code), now=self.clock.now(),
                message_id=int(message_id) if message_id.isdigit() else None)
        return web.Response(status=204)

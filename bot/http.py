"""The HTTP server: Twilio inbound SMS and status callbacks (signatures checked against the
public URL), the Telegram webhook (secret token checked), and `/healthz`."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from aiogram import Bot, Dispatcher
from aiogram.types import Update
from aiohttp import web
from pydantic import ValidationError
from twilio.request_validator import RequestValidator
from twilio.twiml.messaging_response import MessagingResponse

from bot.channels.twilio import status as sms_status
from bot.conversation import SMS, Conversation, InboundEvent
from engage.clock import Clock
from storage.db import Database
from study import alerts

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024  # an inbound SMS form is a few kilobytes; anything bigger is not Twilio
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
SIGNATURE_HEADER = "X-Twilio-Signature"


@dataclass(frozen=True)
class TelegramWebhook:
    """What the webhook route needs: the bot, the aiogram dispatcher and the secret token."""

    bot: Bot
    dispatcher: Dispatcher
    secret: str


@dataclass(frozen=True)
class Server:
    """Everything the routes use."""

    db: Database
    clock: Clock
    public_url: str
    conversation: Conversation | None = None
    twilio_auth_token: str | None = None
    telegram: TelegramWebhook | None = None
    # Each background part and whether it works (scheduler, dispatcher, telegram, ...).
    parts: Callable[[], Mapping[str, bool]] = dict


SERVER = web.AppKey("server", Server)
MAX_BODY_KEY = web.AppKey("max_body", int)


def build_app(server: Server, *, max_body: int = MAX_BODY) -> web.Application:
    """The aiohttp application; Twilio and Telegram routes exist only when configured."""
    app = web.Application(client_max_size=max_body)
    app[SERVER] = server
    app[MAX_BODY_KEY] = max_body
    app.router.add_get("/healthz", healthz)
    if server.twilio_auth_token and server.conversation is not None:
        app.router.add_post("/twilio/sms", twilio_sms)
        app.router.add_post("/twilio/status", twilio_status)
    if server.telegram is not None:
        app.router.add_post("/telegram/webhook", telegram_webhook)
    return app


async def healthz(request: web.Request) -> web.Response:
    """Whether every part works: 503 naming the failing ones (the database unreachable, the
    scheduler or dispatcher not running, Telegram not polled lately, `paging`: an open alert
    whose pages reached nobody at its site), 200 when all do."""
    server = request.app[SERVER]
    parts = {"database": await server.db.ping(), **{k: bool(v) for k, v in
                                                    server.parts().items()}}
    unreached: list[int] = []
    if parts["database"]:
        async with server.db.read() as session:
            unreached = [a.id for a in await alerts.unreached(session)]
        parts["paging"] = not unreached
    failing = sorted(name for name, ok in parts.items() if not ok)
    body: dict[str, object] = {"status": "unavailable" if failing else "ok", **parts}
    if unreached:
        body["unreached_alerts"] = unreached
    if failing:
        body["failing"] = failing
    return web.json_response(body, status=503 if failing else 200)


async def _signed_form(request: web.Request) -> dict[str, str]:
    """The POSTed form if its Twilio signature is valid for our public URL, else 403/413."""
    server = request.app[SERVER]
    limit = request.app[MAX_BODY_KEY]
    if request.content_length is not None and request.content_length > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=request.content_length)
    try:
        form = await request.post()
    except UnicodeDecodeError:
        # Twilio always sends UTF-8: anything else is not Twilio, and not worth a 500 (which
        # would log a traceback per request and invite retries).
        raise web.HTTPBadRequest(text="form is not UTF-8") from None
    signature = request.headers.get(SIGNATURE_HEADER, "")
    # The URL Twilio signed is the public one, never what this request's Host header says.
    url = server.public_url + request.path_qs
    validator = RequestValidator(server.twilio_auth_token or "")
    if not signature or not validator.validate(url, form, signature):
        log.warning("rejected %s: bad or missing Twilio signature", request.path)
        raise web.HTTPForbidden()
    return {key: str(value) for key, value in form.items()}


def _twiml() -> web.Response:
    # Replies go through the outbox (rate limits, retries, audit), never inline in TwiML.
    return web.Response(text=str(MessagingResponse()), content_type="application/xml")


async def twilio_sms(request: web.Request) -> web.Response:
    """Inbound SMS: stored and handled once per MessageSid, answered with empty TwiML."""
    server = request.app[SERVER]
    form = await _signed_form(request)
    sid, sender = form.get("MessageSid", ""), form.get("From", "")
    if not sid or not sender:
        raise web.HTTPBadRequest(text="MessageSid and From are required")
    assert server.conversation is not None
    await server.conversation.handle(InboundEvent(
        channel=SMS, external_id=sid, sender=sender, text=form.get("Body", ""), action=None,
        received_at=server.clock.now(),
        payload={"to": form.get("To", ""), "opt_out_type": form.get("OptOutType", ""),
                 "num_media": form.get("NumMedia", "0")}))
    return _twiml()


async def twilio_status(request: web.Request) -> web.Response:
    """A delivery status callback: the message's status only ever moves forward, and only a
    status that moved it has consequences for the patient."""
    server = request.app[SERVER]
    form = await _signed_form(request)
    sid, status = form.get("MessageSid", ""), form.get("MessageStatus", "").lower()
    if not sid or not status:
        raise web.HTTPBadRequest(text="MessageSid and MessageStatus are required")
    code = form.get("ErrorCode", "")
    message_id = request.query.get("message_id", "")
    async with server.db.write() as session:
        await sms_status.apply(session, provider_id=sid, status=status,
                               code=int(code) if code.isdigit() else 0, now=server.clock.now(),
                               message_id=int(message_id) if message_id.isdigit() else None)
    return web.Response(status=204)


async def telegram_webhook(request: web.Request) -> web.Response:
    """A Telegram update: answered 200 only after its handling is committed."""
    server = request.app[SERVER]
    webhook = server.telegram
    assert webhook is not None
    given = request.headers.get(SECRET_HEADER, "")
    if not hmac.compare_digest(given.encode(), webhook.secret.encode()):
        log.warning("rejected Telegram webhook call: bad secret token")
        raise web.HTTPUnauthorized()
    try:
        raw = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(text="not a Telegram update") from None
    try:
        update = Update.model_validate(raw, context={"bot": webhook.bot})
    except ValidationError:
        update_id = raw.get("update_id") if isinstance(raw, dict) else None
        if not isinstance(update_id, int) or isinstance(update_id, bool):
            raise web.HTTPBadRequest(text="not a Telegram update") from None
        # An update our models reject (aiogram #1587): kept as it came, and answered 200 so
        # Telegram sends the next one instead of this one again.
        await webhook.dispatcher["inbox"].store_raw(update_id, raw)
        return web.json_response({})
    # An exception here means nothing was committed: a 500 makes Telegram deliver it again.
    await webhook.dispatcher.feed_update(webhook.bot, update)
    return web.json_response({})

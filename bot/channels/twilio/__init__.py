"""SMS through Twilio: the async REST client, a status callback per message, and a validity
period so a stale reminder fails instead of arriving hours late. The text is sent as queued: its
choices as numbered words and the site's signature are already in it (`study.outgoing`)."""

from __future__ import annotations

import asyncio
import contextvars
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

import aiohttp
from twilio.base.exceptions import TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.rest import Client

from bot.channels.twilio.vocabulary import (
    NOT_SENT,
    OPTED_OUT,
    TOO_MANY,
    UNREACHABLE,
    accepted,
    error_code,
    fate,
)
from messages.channel import (
    DeliveryFate,
    OutgoingMessage,
    PermanentSendError,
    SendResult,
    TransientSendError,
)

SMS = "sms"
# Asking whether a message of unknown fate was sent: how far our clock may be off Twilio's,
# and how many of the number's newest messages are looked at.
CLOCK_SKEW = timedelta(minutes=2)
LIST_LIMIT = 50

# Whether the request of the send running in this task has been written to the wire: a timeout
# after that may mean Twilio accepted the message.
_written: contextvars.ContextVar[list[bool] | None] = contextvars.ContextVar(
    "sms_written", default=None)


async def _on_headers_sent(session: Any, context: SimpleNamespace, params: Any) -> None:
    flag = _written.get()
    if flag is not None:
        flag[0] = True


class SmsChannel:
    """Sends outbox messages with the real twilio client (pointable at a fake API)."""

    name = SMS

    def __init__(self, *, account_sid: str, auth_token: str, api_url: str,
                 status_callback: str, sender: str | None = None,
                 messaging_service_sid: str | None = None, validity_seconds: int | None = None,
                 timeout: float = 15.0) -> None:
        if not (sender or messaging_service_sid):
            raise ValueError("an SMS sender or messaging service is required")
        trace = aiohttp.TraceConfig()
        trace.on_request_headers_sent.append(_on_headers_sent)
        # Created here, inside the running loop: the client opens an aiohttp session.
        self.http = AsyncTwilioHttpClient(trace_configs=[trace])
        self.client = Client(account_sid, auth_token, http_client=self.http)
        # Every product domain carries its own base URL; messages live on the `api` domain.
        self.client.api.base_url = api_url.rstrip("/")
        self.sender = sender
        self.messaging_service_sid = messaging_service_sid
        self.status_callback = status_callback
        self.validity_seconds = validity_seconds
        self.timeout = timeout

    async def close(self) -> None:
        """Close the HTTP session."""
        await self.http.close()

    def read_status(self, status: str, detail: str) -> DeliveryFate:
        """What a status callback kept while its message was in flight means."""
        return fate(status, error_code(detail))

    async def send(self, message: OutgoingMessage) -> SendResult:
        """Send one SMS; Twilio's SID becomes the provider id for status callbacks."""
        body = _body(message)
        # The outbox id rides in the callback URL: a send that timed out before Twilio's SID
        # came back can still be matched to its status callbacks.
        callback = f"{self.status_callback}?message_id={message.message_id}"
        kwargs: dict[str, Any] = {"to": message.address, "body": body,
                                  "status_callback": callback}
        if self.messaging_service_sid:
            kwargs["messaging_service_sid"] = self.messaging_service_sid
        else:
            kwargs["from_"] = self.sender
        validity = message.validity_seconds or self.validity_seconds
        if validity:
            kwargs["validity_period"] = validity
        written = [False]
        token = _written.set(written)
        try:
            async with asyncio.timeout(self.timeout):
                sent = await self.client.messages.create_async(**kwargs)
        except TwilioRestException as exc:
            raise _rest_error(exc) from None
        except TimeoutError:
            raise TransientSendError("twilio timeout", maybe_sent=written[0]) from None
        except aiohttp.ClientConnectorError as exc:
            raise TransientSendError(f"twilio unreachable: {exc.os_error}") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise TransientSendError(f"twilio network: {type(exc).__name__}",
                                     maybe_sent=written[0]) from None
        finally:
            _written.reset(token)
        return SendResult(provider_id=str(sent.sid), status=accepted(sent.status))

    async def was_sent(self, message: OutgoingMessage, since: datetime) -> SendResult | None:
        """Twilio's message list for the number: the newest message with this text created
        since `since` (less a margin for clock skew) that did not fail, or None. Raises
        TransientSendError when Twilio cannot be asked.

        Not filtered by DateSent at Twilio: a message still queued in a Messaging Service has
        no date_sent yet, and it is there (sending it again would be a duplicate)."""
        body = _body(message)
        after = since - CLOCK_SKEW
        try:
            async with asyncio.timeout(self.timeout):
                listed = await self.client.messages.list_async(to=message.address,
                                                               limit=LIST_LIMIT)
        except TwilioRestException as exc:
            raise TransientSendError(f"twilio message list {exc.status} {exc.code}: "
                                     f"{exc.msg}") from None
        except TimeoutError:
            raise TransientSendError("twilio message list: timeout") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise TransientSendError(f"twilio message list: {type(exc).__name__}") from None
        for found in listed:  # newest first
            created = found.date_created
            if (found.body or "").strip() != body.strip() or (created and created < after):
                continue
            status = str(found.status or "sent")
            if status not in NOT_SENT:
                return SendResult(provider_id=str(found.sid), status=accepted(status))
        return None


def _body(message: OutgoingMessage) -> str:
    # The whole SMS, choice line and signature included, as study.outgoing queued it.
    return message.text


def _rest_error(exc: TwilioRestException) -> Exception:
    code = int(exc.code or 0)
    reason = f"twilio {exc.status} {code}: {exc.msg}"
    if code == OPTED_OUT:
        return PermanentSendError(reason, unreachable=True, opted_out=True, code=str(code))
    if code in UNREACHABLE:
        return PermanentSendError(reason, unreachable=True, code=str(code))
    if exc.status == 429 or code == TOO_MANY or exc.status >= 500:
        return TransientSendError(reason, retry_after=5.0 if exc.status == 429 else None)
    if exc.status in (401, 403):
        # Our credentials or account, not the recipient: keep the message and retry later.
        return TransientSendError(reason, retry_after=60.0)
    return PermanentSendError(reason, code=str(code))

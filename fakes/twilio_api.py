"""A fake Twilio REST API on 127.0.0.1: records Messages.json posts, can fail per number (or
accept a message and answer too late), and lists the messages sent to a number since a time
(`GET Messages.json?To=...&DateSent>=...`, as Twilio's message list filters)."""

from __future__ import annotations

import asyncio
import base64
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

from aiohttp import web

from engage.clock import SystemClock
from fakes.loopback import LoopbackServer

ERRORS = {
    21610: "Attempt to send to unsubscribed recipient",
    21211: "The 'To' number is not a valid phone number.",
    21614: "'To' number is not a valid mobile number",
    20429: "Too Many Requests",
}


@dataclass
class SmsFailure:
    """A canned answer for one number: a Twilio error code, a bare HTTP status, or a hang."""

    status: int = 400
    code: int | None = None
    delay: float = 0.0  # answer only after this long (to provoke client timeouts)
    times: int | None = None  # None: every time


@dataclass
class SmsRequest:
    account_sid: str
    params: dict[str, str]
    auth: tuple[str, str] | None
    sid: str | None = None
    at: datetime = field(default_factory=lambda: SystemClock().now())  # when it was taken


class FakeTwilioAPI:
    """The fake server; `base_url` goes into ENGAGE_TWILIO_API_URL. `clock` stamps accepted
    messages (their date_sent), so a test's simulated time and the fake's agree."""

    def __init__(self, clock: Callable[[], datetime] | None = None) -> None:
        self.requests: list[SmsRequest] = []
        self.failures: dict[str, SmsFailure] = {}
        self.list_failure: SmsFailure | None = None  # how the message list fails, if it does
        self.list_queries: list[dict[str, str]] = []
        self.clock = clock or SystemClock().now
        self._sids = itertools.count(1)
        self._server = LoopbackServer()
        self.base_url = ""

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/2010-04-01/Accounts/{sid}/Messages.json", self._create)
        app.router.add_get("/2010-04-01/Accounts/{sid}/Messages.json", self._list)
        self.base_url = await self._server.serve(app)
        return self.base_url

    async def stop(self) -> None:
        await self._server.close()

    def fail_number(self, to: str, failure: SmsFailure) -> None:
        """Make sends to a number fail."""
        self.failures[to] = failure

    def fail_list(self, failure: SmsFailure | None) -> None:
        """Make the message list fail (an error status, or an answer after `delay`); None
        serves it again. `times` counts as for sends."""
        self.list_failure = failure

    def sent_to(self, to: str | None = None) -> list[SmsRequest]:
        """Accepted messages (with a SID), optionally to one number."""
        return [r for r in self.requests if r.sid and (to is None or r.params.get("To") == to)]

    async def wait_for(self, count: int = 1, within: float = 5.0) -> list[SmsRequest]:
        """Wait until `count` messages were accepted."""
        deadline = asyncio.get_running_loop().time() + within
        while len(self.sent_to()) < count:
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"only {len(self.sent_to())} SMS accepted")
            await asyncio.sleep(0.02)
        return self.sent_to()

    @staticmethod
    def _auth(request: web.Request) -> tuple[str, str] | None:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return None
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        return user, password

    async def _create(self, request: web.Request) -> web.Response:
        account = request.match_info["sid"]
        form = await request.post()
        params = {k: str(v) for k, v in form.items()}
        entry = SmsRequest(account, params, self._auth(request), at=self.clock())
        self.requests.append(entry)
        if entry.auth is None or entry.auth[0] != account:
            return web.json_response({"code": 20003, "message": "Authenticate",
                                      "status": 401}, status=401)
        failure = self.failures.get(params.get("To", ""))
        if failure is not None:
            if failure.times is not None:
                failure.times -= 1
                if failure.times <= 0:
                    del self.failures[params.get("To", "")]
            if failure.code is None and failure.status < 400:
                # Taken before the answer is late: its status callbacks may come first.
                entry.sid = f"SM{next(self._sids):032x}"
            if failure.delay:
                await asyncio.sleep(failure.delay)
            if failure.code is not None or failure.status >= 400:
                code = failure.code
                body = {"code": code, "message": ERRORS.get(code or 0, "Error"),
                        "more_info": f"https://www.twilio.com/docs/errors/{code}",
                        "status": failure.status}
                return web.json_response(body, status=failure.status)
        entry.sid = entry.sid or f"SM{next(self._sids):032x}"
        return web.json_response(self._resource(account, entry.sid, params), status=201)

    async def _list(self, request: web.Request) -> web.Response:
        """Twilio's message list: newest first, filtered by To and DateSent (`DateSent>`,
        `DateSent<`: a date `YYYY-MM-DD` or an instant `YYYY-MM-DDThh:mm:ssZ`)."""
        account = request.match_info["sid"]
        query = dict(request.query)
        self.list_queries.append(query)
        auth = self._auth(request)
        if auth is None or auth[0] != account:
            return web.json_response({"code": 20003, "message": "Authenticate",
                                      "status": 401}, status=401)
        failure = self.list_failure
        if failure is not None:
            if failure.times is not None:
                failure.times -= 1
                if failure.times <= 0:
                    self.list_failure = None
            if failure.delay:
                await asyncio.sleep(failure.delay)
            if failure.status >= 400:
                return web.json_response({"code": failure.code, "message": "Error",
                                          "status": failure.status}, status=failure.status)
        after, before = _bound(query.get("DateSent>")), _bound(query.get("DateSent<"))
        found = [r for r in reversed(self.sent_to(query.get("To")))
                 if r.account_sid == account and (after is None or _on_or_after(r.at, after))
                 and (before is None or not _on_or_after(r.at, before))]
        size = int(query.get("PageSize", "50"))
        uri = f"/2010-04-01/Accounts/{account}/Messages.json"
        return web.json_response({
            "messages": [self._resource(account, r.sid or "", r.params, at=r.at, status="sent")
                         for r in found[:size]],
            "end": min(size, len(found)) - 1, "first_page_uri": f"{uri}?PageSize={size}&Page=0",
            "next_page_uri": None, "page": 0, "page_size": size, "previous_page_uri": None,
            "start": 0, "uri": f"{uri}?PageSize={size}&Page=0"})

    @staticmethod
    def _resource(account: str, sid: str, params: dict[str, str], *,
                  at: datetime | None = None, status: str | None = None) -> dict[str, Any]:
        stamp = format_datetime(at or datetime(2026, 3, 2, tzinfo=UTC), usegmt=False)
        return {
            "account_sid": account, "api_version": "2010-04-01", "body": params.get("Body", ""),
            "date_created": stamp, "date_sent": stamp if status == "sent" else None,
            "date_updated": stamp, "direction": "outbound-api",
            "error_code": None, "error_message": None, "from": params.get("From"),
            "messaging_service_sid": params.get("MessagingServiceSid"),
            "num_media": "0", "num_segments": "1", "price": None, "price_unit": "USD",
            "sid": sid, "status": status or ("queued" if params.get("MessagingServiceSid") is None
                                             else "accepted"),
            "subresource_uris": {"media": f"/2010-04-01/Accounts/{account}/Messages/{sid}/"
                                          "Media.json"},
            "to": params.get("To"),
            "uri": f"/2010-04-01/Accounts/{account}/Messages/{sid}.json",
        }


def _bound(text: str | None) -> datetime | str | None:
    """A DateSent filter value: an instant (aware), or a bare date as text."""
    if not text:
        return None
    if "T" not in text:
        return text[:10]
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _on_or_after(at: datetime, bound: datetime | str) -> bool:
    if isinstance(bound, str):
        return at.astimezone(UTC).date().isoformat() >= bound
    return at >= bound

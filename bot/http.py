"""The HTTP server: `/healthz`, and the inbound routes each channel adapter provides (Twilio's
SMS and status callbacks, Telegram's webhook: see `bot/channels/<name>/`), mounted as given."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field

from aiohttp import web

from storage import outbox
from storage.db import Database
from study import alerts
from trial.clock import Clock, SystemClock

MAX_BODY = 64 * 1024  # an inbound SMS form or update is a few kilobytes; bigger is no provider's
# A safety message left `unknown` is confirmed with its provider or sent again within about half
# a minute (the dispatcher's unknown_check x unknown_attempts); one still unknown after this long
# waits for an operator (`engage outbox unknown`): /healthz says "degraded" until then.
UNCONFIRMED_SAFETY_SECONDS = 120.0


@dataclass(frozen=True)
class Server:
    """What the server serves: the database (for /healthz), each background part and whether
    it works (scheduler, dispatcher, telegram, ...), and the adapters' inbound routes; the
    clock /healthz measures unconfirmed messages by, and how long a safety message may stay
    unconfirmed before the service is "degraded"."""

    db: Database
    parts: Callable[[], Mapping[str, bool]] = dict
    routes: Iterable[web.AbstractRouteDef] = ()
    clock: Clock = field(default_factory=SystemClock)
    unconfirmed_safety_seconds: float = UNCONFIRMED_SAFETY_SECONDS


def build_app(server: Server, *, max_body: int = MAX_BODY) -> web.Application:
    """The aiohttp application: /healthz and the routes the configured adapters provide."""
    app = web.Application(client_max_size=max_body, middlewares=[_body_limit])
    app[SERVER] = server
    app[MAX_BODY_KEY] = max_body
    app.router.add_get("/healthz", healthz)
    app.router.add_routes(list(server.routes))
    return app


SERVER = web.AppKey("server", Server)
MAX_BODY_KEY = web.AppKey("max_body", int)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def _body_limit(request: web.Request, handler: Handler) -> web.StreamResponse:
    # Refused before reading it: an announced body over the limit is no provider's.
    limit = request.app[MAX_BODY_KEY]
    if request.content_length is not None and request.content_length > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=request.content_length)
    return await handler(request)


async def healthz(request: web.Request) -> web.Response:
    """Whether every part works: 503 naming the failing ones (the database unreachable, the
    scheduler or dispatcher not running, Telegram not polled lately, `paging`: an open alert
    whose pages reached nobody at its site), 200 when all do.

    Messages of unknown fate (a send that may have reached the provider) are counted by lane
    with the oldest one's age (`unconfirmed`); a safety message unknown for longer than
    `unconfirmed_safety_seconds` makes the status "degraded" (still 200: everything runs, and
    restarting would not confirm it; an operator decides, `engage outbox unknown`)."""
    server = request.app[SERVER]
    parts = {"database": await server.db.ping(), **{k: bool(v) for k, v in
                                                    server.parts().items()}}
    unreached: list[int] = []
    unknown: dict[str, outbox.Unconfirmed] = {}
    if parts["database"]:
        async with server.db.read() as session:
            unreached = [a.id for a in await alerts.unreached(session)]
            unknown = await outbox.unconfirmed(session)
        parts["paging"] = not unreached
    failing = sorted(name for name, ok in parts.items() if not ok)
    now = server.clock.now()
    ages = {lane: max(0.0, (now - found.since).total_seconds())
            for lane, found in unknown.items()}
    degraded = ["unconfirmed"] if ages.get(outbox.SAFETY, 0.0) > \
        server.unconfirmed_safety_seconds else []
    status = "unavailable" if failing else "degraded" if degraded else "ok"
    body: dict[str, object] = {"status": status, **parts}
    if unreached:
        body["unreached_alerts"] = unreached
    if unknown:
        body["unconfirmed"] = {lane: {"count": found.count,
                                      "oldest_seconds": round(ages[lane], 1)}
                               for lane, found in sorted(unknown.items())}
    if failing:
        body["failing"] = failing
    if degraded:
        body["degraded"] = degraded
    return web.json_response(body, status=503 if failing else 200)

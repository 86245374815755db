"""The HTTP server mounts the routes each channel adapter provides, and nothing else; /healthz
shows messages of unknown fate."""

from __future__ import annotations

from datetime import timedelta

from aiohttp import web

from bot.http import MAX_BODY, Server
from engage.clock import SimulatedClock
from fakes.webhooks import http_client
from messages.channel import TransientSendError
from scheduler.dispatcher import OutboxSender
from storage.db import Database
from tests.workers.dispatch_support import FakeChannel, add_patient, insert_rows, row, seed_site
from trial.protocol import Protocol


async def test_a_toy_adapters_routes_are_mounted_beside_healthz(sqlite_db: Database) -> None:
    heard: list[str] = []

    async def inbound(request: web.Request) -> web.Response:
        heard.append(await request.text())
        return web.json_response({"ok": True})

    server = Server(db=sqlite_db, routes=[web.post("/toy/inbound", inbound)])
    async with http_client(server) as client:
        assert (await client.post("/toy/inbound", data="hello")).status == 200
        assert heard == ["hello"]
        assert (await client.get("/healthz")).status == 200
        # No other adapter's routes unless it is configured.
        assert (await client.post("/twilio/sms", data={"Body": "x"})).status == 404
        # The server's body limit holds for every adapter's route, before it is read.
        response = await client.post("/toy/inbound", data=b"x" * (MAX_BODY + 1))
        assert response.status == 413
        assert heard == ["hello"]


async def test_healthz_counts_unconfirmed_messages_and_degrades_on_an_old_safety_one(
        db: Database, protocol: Protocol, clock: SimulatedClock) -> None:
    # Sends that timed out after the request was written: the provider may have them.
    await seed_site(db, clock.now())
    pid = await add_patient(db, clock.now(), "S01-001", telegram_id=4242)
    await insert_rows(db, [row("dose:reminder:1", address="4242", now=clock.now(),
                               patient_id=pid)])
    telegram = FakeChannel("telegram")
    telegram.fail_always("4242", TransientSendError("timeout", maybe_sent=True))
    sender = OutboxSender(db, protocol, {"telegram": telegram}, clock, worker_id="w", rates={})
    await sender.run_once()
    server = Server(db=db, clock=clock, unconfirmed_safety_seconds=120)
    async with http_client(server) as client:
        clock.advance(timedelta(minutes=10))
        response = await client.get("/healthz")
        # A routine message of unknown fate waits for a status callback or an operator: shown,
        # not a fault.
        assert response.status == 200
        body = await response.json()
        assert body["status"] == "ok"
        assert body["unconfirmed"] == {"routine": {"count": 1, "oldest_seconds": 600.0}}
        await insert_rows(db, [row("reply:1:0", address="4242", now=clock.now(),
                                   patient_id=pid, lane="safety")])
        await sender.run_once()
        clock.advance(timedelta(seconds=60))
        body = await (await client.get("/healthz")).json()
        assert body["status"] == "ok"  # being confirmed with the provider or sent again
        assert body["unconfirmed"]["safety"] == {"count": 1, "oldest_seconds": 60.0}
        clock.advance(timedelta(seconds=61))
        response = await client.get("/healthz")
        assert response.status == 200  # everything runs: an operator decides
        body = await response.json()
        assert (body["status"], body["degraded"]) == ("degraded", ["unconfirmed"])
        assert body["unconfirmed"] == {"routine": {"count": 1, "oldest_seconds": 721.0},
                                       "safety": {"count": 1, "oldest_seconds": 121.0}}

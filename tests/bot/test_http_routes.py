"""The HTTP server mounts the routes each channel adapter provides, and nothing else."""

from __future__ import annotations

from aiohttp import web

from bot.http import MAX_BODY, Server
from fakes.webhooks import http_client
from storage.db import Database


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

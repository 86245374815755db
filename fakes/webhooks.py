"""The project's HTTP app under a test client, and Twilio-signed form posts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer
from twilio.request_validator import RequestValidator

from bot.http import Server, build_app

PUBLIC_URL = "https://engage.example.org"


@asynccontextmanager
async def http_client(server: Server, *, max_body: int | None = None
                      ) -> AsyncIterator[TestClient]:
    """A client for the app built from `server`."""
    app = build_app(server) if max_body is None else build_app(server, max_body=max_body)
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()


def sign(auth_token: str, url: str, params: dict[str, str]) -> str:
    """The X-Twilio-Signature Twilio would send for this form posted to `url`."""
    return RequestValidator(auth_token).compute_signature(url, params)


async def post_signed(client: TestClient, path: str, params: dict[str, str], auth_token: str,
                      *, signed_url: str | None = None, signed_params: dict[str, str] | None = None
                      ) -> ClientResponse:
    """POST a form with a signature (by default the valid one for PUBLIC_URL + path)."""
    signature = sign(auth_token, signed_url or PUBLIC_URL + path, signed_params or params)
    return await client.post(path, data=params, headers={"X-Twilio-Signature": signature})

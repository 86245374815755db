"""What the WeChat and WeCom adapters share: Tencent's JSON APIs (`api.weixin.qq.com`,
`qyapi.weixin.qq.com`) answer with an `errcode` (0: ok) and take an `access_token` query
parameter that lives 7,200 s and is rate-limited.

`TencentAPI` holds one aiohttp session and calls an endpoint with the access token every worker
shares through the database (`storage.tokens`); a token the API refuses is replaced once (one
fetch, however many workers saw the refusal) and the call made again, once. Each adapter says
how its token is fetched, which errcodes mean a refused token, and how an HTTP failure reads
(`bot.channels.wechat.WeChatAPI`, `bot.channels.wecom.WeComAPI`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any, ClassVar

import aiohttp

from storage.db import Database
from storage.tokens import access_token

log = logging.getLogger(__name__)

Form = aiohttp.FormData | Callable[[], aiohttp.FormData]


class TencentError(Exception):
    """The API answered with a non-zero errcode."""

    channel: ClassVar[str] = "tencent"

    def __init__(self, path: str, errcode: int, errmsg: str) -> None:
        super().__init__(self.describe(path, errcode, errmsg))
        self.path = path
        self.errcode = errcode
        self.errmsg = errmsg

    @classmethod
    def describe(cls, path: str, errcode: int, errmsg: str) -> str:
        return f"{cls.channel} {path}: errcode {errcode} {errmsg}".strip()


class TencentAPI:
    """One account's API: a session, the shared token, and calls that replace a refused token
    once. Subclasses set `error` and `token_refused` and write `_fetch_token` and
    `token_name`."""

    error: ClassVar[type[TencentError]] = TencentError
    token_refused: ClassVar[frozenset[int]] = frozenset()

    def __init__(self, db: Database, now: Callable[[], datetime], *, api_url: str,
                 timeout: float = 10.0) -> None:
        self.db = db
        self.now = now
        self.api_url = api_url.rstrip("/")
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    @property
    def token_name(self) -> str:
        """The row of `provider_tokens` holding this account's access token."""
        raise NotImplementedError

    def _session_options(self) -> dict[str, Any]:
        """More `aiohttp.ClientSession` arguments (trace hooks)."""
        return {}

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:  # made inside the running loop
            self._session = aiohttp.ClientSession(timeout=self.timeout,
                                                  **self._session_options())
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _fetch_token(self) -> tuple[str, int]:
        """A new token from the API and its lifetime in seconds."""
        raise NotImplementedError

    async def token(self, rejected: str | None = None) -> str:
        """The shared token (`storage.tokens`); after a refusal, `rejected` that token."""
        return await access_token(self.db, self.token_name, self._fetch_token, now=self.now,
                                  rejected=rejected)

    async def call(self, path: str, *, json: dict[str, Any] | None = None,
                   data: Form | None = None,
                   params: dict[str, str] | None = None) -> dict[str, Any]:
        """POST to `path` with the access token; a refused token is replaced once. `data` may
        be a callable making the form anew (a form is consumed by a send)."""
        token = await self.token()
        for attempt in (1, 2):
            form = data() if callable(data) else data
            try:
                return await self._request("POST", path, json=json, data=form,
                                           params={**(params or {}), "access_token": token})
            except TencentError as exc:
                if exc.errcode not in self.token_refused or attempt == 2:
                    raise
                log.info("%s refused the access token (%s): replacing it once",
                         self.error.channel, exc.errcode)
                token = await self.token(rejected=token)
        raise AssertionError("unreachable")

    def _check_status(self, response: aiohttp.ClientResponse, path: str) -> None:
        """Raise for an HTTP status that is not an answer (the API answers errors as 200)."""

    def _not_an_object(self, path: str) -> Exception:
        """What a body that is not a JSON object raises."""
        return self.error(path, -2, "not a JSON object")

    async def _request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        async with self.session.request(method, self.api_url + path, **kwargs) as response:
            self._check_status(response, path)
            body = await response.json(content_type=None)
        if not isinstance(body, dict):
            raise self._not_an_object(path)
        errcode = int(body.get("errcode") or 0)
        if errcode:
            raise self.error(path, errcode, str(body.get("errmsg") or ""))
        return body

"""What the fake WeChat and WeCom APIs share (`fakes/wechat.py`, `fakes/wecom.py`): both answer
as Tencent's JSON APIs do, HTTP 200 with an `errcode` (0: ok), take an `access_token` query
parameter, and refuse an unknown token or one they said has expired; both record every request.
Also the XML head of the pushes both platforms make to our server."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from aiohttp import web

from fakes.loopback import LoopbackServer

EXPIRED = 42001  # access_token expired
T = TypeVar("T")


@dataclass
class APIRequest:
    """One request to a fake: its path, query and JSON body (or the uploaded file)."""

    path: str
    query: dict[str, str]
    body: dict[str, Any] | None = None
    upload: bytes | None = None
    errcode: int = 0  # what the fake answered


class FakeTencentAPI:
    """A fake server on 127.0.0.1; `base_url` goes into the channel's API URL setting.
    Subclasses give their `routes()` (the token endpoint included), `TOKEN_PATH` and the errcode
    of an unknown token."""

    TOKEN_PATH: ClassVar[str] = "/cgi-bin/token"
    UNKNOWN_TOKEN: ClassVar[int] = 40001
    NAME: ClassVar[str] = "Tencent"

    def __init__(self) -> None:
        self.requests: list[APIRequest] = []
        self.media: dict[str, bytes] = {}
        self.tokens: list[str] = []  # every token handed out, in order
        self._expired: dict[str, int] = {}  # token -> the errcode it gets now
        self._expire_next: list[int] = []  # errcodes for the next calls with a good token
        self._server = LoopbackServer()
        self.base_url = ""

    def routes(self) -> list[web.RouteDef]:
        raise NotImplementedError

    async def start(self) -> str:
        app = web.Application()
        app.add_routes(self.routes())
        self.base_url = await self._server.serve(app)
        return self.base_url

    async def stop(self) -> None:
        await self._server.close()

    # -- test controls -----------------------------------------------------------------------
    def expire_token(self, times: int = 1, *, errcode: int = EXPIRED) -> None:
        """The next `times` calls with the current token answer `errcode` (42001: expired;
        40001: replaced by another fetch elsewhere), and that token stays refused."""
        self._expire_next += [errcode] * times

    def token_calls(self) -> int:
        """How many tokens were asked for."""
        return sum(1 for r in self.requests if r.path == self.TOKEN_PATH)

    async def _until(self, count: int, within: float, found: Callable[[], Sequence[T]],
                     what: Callable[[], object]) -> list[T]:
        """Wait until `found()` has `count` items (else fail, saying `what()`)."""
        deadline = asyncio.get_running_loop().time() + within
        while len(found()) < count:
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"only {len(found())} {self.NAME} messages accepted: "
                                     f"{what()}")
            await asyncio.sleep(0.01)
        return list(found())

    # -- the API -----------------------------------------------------------------------------
    def _issue_token(self) -> str:
        token = secrets.token_urlsafe(48)
        self.tokens.append(token)
        return token

    def _record(self, request: web.Request, body: dict[str, Any] | None = None,
                upload: bytes | None = None) -> APIRequest:
        entry = APIRequest(request.path, dict(request.query), body, upload)
        self.requests.append(entry)
        return entry

    def _answer(self, entry: APIRequest, errcode: int, errmsg: str = "ok",
                **extra: Any) -> web.Response:
        entry.errcode = errcode
        return web.json_response({"errcode": errcode, "errmsg": errmsg, **extra})

    def _token_error(self, entry: APIRequest) -> web.Response | None:
        """The refusal of a call whose token is not (or no longer) good, else None."""
        token = entry.query.get("access_token", "")
        if token in self._expired:
            code = self._expired[token]
            return self._answer(entry, code, _TOKEN_ERRMSG.get(code, "access_token refused"))
        if token not in self.tokens:
            return self._answer(entry, self.UNKNOWN_TOKEN,
                                _TOKEN_ERRMSG.get(self.UNKNOWN_TOKEN, "invalid access_token"))
        if self._expire_next:
            code = self._expired[token] = self._expire_next.pop(0)
            return self._answer(entry, code, _TOKEN_ERRMSG.get(code, "access_token refused"))
        return None

    async def _json(self, request: web.Request) -> dict[str, Any] | None:
        """The request's JSON object, or None."""
        try:
            body = json.loads(await request.read())
        except ValueError:
            return None
        return body if isinstance(body, dict) else None


_TOKEN_ERRMSG = {42001: "access_token expired",
                 40001: "invalid credential, access_token is invalid or not latest",
                 40014: "invalid access_token"}


def message_xml(to: str, sender: str, created: int, msgtype: str, inner: str) -> str:
    """A push's plain XML as both platforms write it: the head, then `inner`."""
    return (f"<xml><ToUserName><![CDATA[{to}]]></ToUserName>"
            f"<FromUserName><![CDATA[{sender}]]></FromUserName>"
            f"<CreateTime>{created}</CreateTime><MsgType><![CDATA[{msgtype}]]></MsgType>"
            f"{inner}</xml>")

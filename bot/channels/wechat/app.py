"""One Official Account put together: the send adapter and the `/wechat` routes (built from the
settings by `engage.runtime.wechat_from_settings`, for `engage run`, the CLI and the tests)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from bot.channels.wechat import API_URL, WeChatAPI, WeChatChannel, templates
from bot.channels.wechat.inbound import WeChatInbound
from bot.conversation import Conversation
from storage.db import Database
from trial.clock import Clock


@dataclass
class WeChat:
    """One Official Account: its send adapter, and its inbound routes once mounted."""

    channel: WeChatChannel
    clock: Clock
    app_id: str
    token: str
    aes_key: str | None = None
    inbound: list[WeChatInbound] = field(default_factory=list)

    def routes(self, conversation: Conversation) -> list[web.RouteDef]:
        """The `/wechat` routes: they need no API, so they work while WeChat's is unreachable."""
        inbound = WeChatInbound(conversation, self.clock, app_id=self.app_id, token=self.token,
                                aes_key=self.aes_key)
        self.inbound.append(inbound)
        return inbound.routes()

    async def idle(self) -> None:
        """Wait until every push received so far is handled."""
        for inbound in self.inbound:
            await inbound.idle()

    async def close(self) -> None:
        await self.idle()
        await self.channel.close()


def build(db: Database, clock: Clock, *, app_id: str, app_secret: str, token: str,
          aes_key: str | None = None, api_url: str = API_URL,
          templates_file: Path | None = None) -> WeChat:
    """The account's channel and routes (the template file read now: a bad one stops here)."""
    api = WeChatAPI(db, clock.now, app_id=app_id, app_secret=app_secret, api_url=api_url)
    return WeChat(WeChatChannel(api, templates.load(templates_file)), clock, app_id, token,
                  aes_key)

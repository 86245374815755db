"""The WeChat channel from the settings: the send adapter and the `/wechat` routes (one factory
for `engage run`, the CLI's QR command and the tests)."""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import web

from bot.channels.wechat import WeChatAPI, WeChatChannel, templates
from bot.channels.wechat.inbound import WeChatInbound
from bot.conversation import Conversation
from engage.clock import Clock
from engage.config import Settings
from storage.db import Database


@dataclass
class WeChat:
    """One Official Account: its send adapter, and its inbound routes once mounted."""

    settings: Settings
    channel: WeChatChannel
    clock: Clock
    inbound: list[WeChatInbound] = field(default_factory=list)

    def routes(self, conversation: Conversation) -> list[web.RouteDef]:
        """The `/wechat` routes: they need no API, so they work while WeChat's is unreachable."""
        settings = self.settings
        assert settings.wechat_token is not None
        assert settings.wechat_app_id is not None
        aes = settings.wechat_aes_key
        inbound = WeChatInbound(conversation, self.clock, app_id=settings.wechat_app_id,
                                token=settings.wechat_token.get_secret_value(),
                                aes_key=aes.get_secret_value() if aes else None)
        self.inbound.append(inbound)
        return inbound.routes()

    async def close(self) -> None:
        for inbound in self.inbound:
            await inbound.idle()
        await self.channel.close()


def from_settings(settings: Settings, db: Database, clock: Clock) -> WeChat | None:
    """The channel when ENGAGE_WECHAT_APP_ID, _APP_SECRET and _TOKEN are set, else None."""
    if not settings.wechat_enabled:
        return None
    assert settings.wechat_app_id is not None
    assert settings.wechat_app_secret is not None
    api = WeChatAPI(db, clock.now, app_id=settings.wechat_app_id,
                    app_secret=settings.wechat_app_secret.get_secret_value(),
                    api_url=settings.wechat_api_url)
    return WeChat(settings, WeChatChannel(api, templates.load(settings.wechat_templates)), clock)

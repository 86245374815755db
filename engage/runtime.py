"""Wiring for `engage run`: settings -> database, protocol, channels, dispatcher, scheduler,
conversation, Telegram polling or webhook, and the HTTP server; a graceful stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta

from aiogram import Bot
from aiohttp import web

from bot import inbox
from bot.channels.telegram import (
    UPDATE_TYPES,
    TelegramChannel,
    TelegramPoller,
    build_dispatcher,
    make_bot,
)
from bot.channels.telegram.webhook import PATH as TELEGRAM_WEBHOOK_PATH
from bot.channels.telegram.webhook import TelegramWebhook
from bot.channels.twilio import SmsChannel
from bot.channels.twilio.inbound import TwilioInbound
from bot.channels.wechat import app as wechat_app
from bot.channels.wecom import MEMBER_RATE as WECOM_MEMBER_RATE
from bot.channels.wecom import RATE as WECOM_RATE
from bot.channels.wecom import WECOM, WeComAPI, WeComChannel
from bot.channels.wecom.callback import WeComCallback
from bot.conversation import Conversation, InboundEvent
from bot.http import Server, build_app
from engage.clock import Clock, SystemClock
from engage.config import Settings
from messages.channel import Channel
from scheduler.dispatcher import OutboxSender
from scheduler.ratelimit import ChannelRate
from scheduler.runner import Runner
from scheduler.supervision import Supervised
from storage.db import Database
from storage.migrate import upgrade
from trial.protocol import Protocol, load_protocol

log = logging.getLogger(__name__)

PENDING_SWEEP_SECONDS = 60.0
PENDING_BATCH = 100  # rows Conversation.handle_pending takes at a time
SHUTDOWN_GRACE_SECONDS = 20.0


def sms_channel(settings: Settings, protocol: Protocol) -> SmsChannel | None:
    """The SMS channel the configuration asks for, or None when Twilio is not set up."""
    if not (settings.twilio_account_sid and settings.twilio_auth_token):
        return None
    return SmsChannel(account_sid=settings.twilio_account_sid,
                      auth_token=settings.twilio_auth_token.get_secret_value(),
                      api_url=settings.twilio_api_url,
                      status_callback=f"{settings.public_url}/twilio/status",
                      sender=settings.twilio_from,
                      messaging_service_sid=settings.twilio_messaging_service_sid,
                      validity_seconds=protocol.sms.validity_period_seconds)


def wecom_channel(settings: Settings, db: Database, clock: Clock) -> WeComChannel | None:
    """The WeCom staff channel when its five ENGAGE_WECOM_ settings are set."""
    if not settings.wecom_enabled:
        return None
    assert settings.wecom_corp_id is not None
    assert settings.wecom_agent_id is not None
    assert settings.wecom_secret is not None
    return WeComChannel(WeComAPI(db, clock.now, corp_id=settings.wecom_corp_id,
                                 agent_id=settings.wecom_agent_id,
                                 secret=settings.wecom_secret.get_secret_value(),
                                 api_url=settings.wecom_api_url))


def wecom_callback(settings: Settings, conversation: Conversation, clock: Clock,
                   channel: WeComChannel) -> WeComCallback:
    """The WeCom app's callback route (/wecom) for a configured channel."""
    assert settings.wecom_corp_id is not None
    assert settings.wecom_token is not None
    assert settings.wecom_aes_key is not None
    return WeComCallback.create(conversation, clock, token=settings.wecom_token.get_secret_value(),
                                aes_key=settings.wecom_aes_key.get_secret_value(),
                                corp_id=settings.wecom_corp_id, channel=channel)


def configured_rates(settings: Settings, *, telegram_chat_rate: float = 0.95
                     ) -> dict[str, ChannelRate]:
    """The channels' pacing from the settings (ENGAGE_SMS_RATE, ENGAGE_TELEGRAM_RATE)."""
    return {"telegram": ChannelRate(settings.telegram_rate, telegram_chat_rate),
            "sms": ChannelRate(settings.sms_rate),
            WECOM: ChannelRate(WECOM_RATE, WECOM_MEMBER_RATE)}


def wechat_from_settings(settings: Settings, db: Database,
                         clock: Clock) -> wechat_app.WeChat | None:
    """The WeChat channel when ENGAGE_WECHAT_APP_ID, _APP_SECRET and _TOKEN are set."""
    if not settings.wechat_enabled:
        return None
    app_id, secret, token = (settings.wechat_app_id, settings.wechat_app_secret,
                             settings.wechat_token)
    assert app_id is not None
    assert secret is not None
    assert token is not None
    aes = settings.wechat_aes_key
    return wechat_app.build(db, clock, app_id=app_id, app_secret=secret.get_secret_value(),
                            token=token.get_secret_value(),
                            aes_key=aes.get_secret_value() if aes else None,
                            api_url=settings.wechat_api_url,
                            templates_file=settings.wechat_templates)


@dataclass
class Runtime:
    """Everything `engage run` starts, in the order it starts."""

    settings: Settings
    clock: Clock = field(default_factory=SystemClock)
    tick_seconds: float = 60.0
    # Telegram allows one getUpdates poller per bot token (a second gets 409 Conflict): with
    # several workers in polling mode, exactly one polls and the others only tick and dispatch.
    telegram_polling: bool = True
    restart_delay: float = 1.0  # the first wait before a dead task (or getUpdates) is retried
    db: Database | None = None
    protocol: Protocol | None = None
    channels: dict[str, Channel] = field(default_factory=dict)
    bot: Bot | None = None
    sms: SmsChannel | None = None
    wechat: wechat_app.WeChat | None = None
    wecom: WeComChannel | None = None
    runner: Runner | None = None
    poller: TelegramPoller | None = None
    http: web.AppRunner | None = None
    port: int | None = None
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    supervised: list[Supervised] = field(default_factory=list)

    async def start(self) -> None:
        """Bring every part up; raises (after cleaning up) if one cannot start."""
        settings = self.settings
        try:
            self.protocol = load_protocol(settings.protocol)
            self.db = Database(settings.database_url)
            if self.db.is_sqlite:
                await upgrade(self.db.engine)
            if settings.telegram_token is not None:
                self.bot = make_bot(settings.telegram_token.get_secret_value(),
                                    settings.telegram_api_url)
                self.channels["telegram"] = TelegramChannel(self.bot)
            self.sms = sms_channel(settings, self.protocol)
            if self.sms is not None:
                self.channels["sms"] = self.sms
            self.wechat = wechat_from_settings(settings, self.db, self.clock)
            if self.wechat is not None:
                self.channels["wechat"] = self.wechat.channel
            self.wecom = wecom_channel(settings, self.db, self.clock)
            if self.wecom is not None:
                self.channels[WECOM] = self.wecom
            dispatcher = OutboxSender(self.db, self.protocol, self.channels, self.clock,
                                    worker_id=f"{socket.gethostname()}:{os.getpid()}",
                                    rates=configured_rates(settings))
            conversation = Conversation(self.db, self.protocol, self.clock, wake=dispatcher.wake)
            self.runner = Runner(self.db, self.protocol, dispatcher, self.clock,
                                 tick_seconds=self.tick_seconds)
            self.runner.restart_delay = self.restart_delay
            await self.runner.start()
            webhook = await self._start_telegram(conversation)
            await self._start_http(conversation, webhook)
            self._supervise("pending inbound sweep", lambda: self._sweep(conversation))
        except BaseException:
            await self.stop()
            raise
        log.info("engage is running: channels %s, HTTP on %s:%s",
                 ", ".join(sorted(self.channels)) or "none", settings.http_host, self.port)

    async def _start_telegram(self, conversation: Conversation) -> TelegramWebhook | None:
        if self.bot is None:
            return None
        dispatcher = build_dispatcher(conversation, self.clock)
        if self.settings.telegram_mode == "webhook":
            secret = self.settings.telegram_webhook_secret
            assert secret is not None  # Settings refuses webhook mode without one
            await self.bot.set_webhook(f"{self.settings.public_url}{TELEGRAM_WEBHOOK_PATH}",
                                       secret_token=secret.get_secret_value(),
                                       allowed_updates=UPDATE_TYPES)
            return TelegramWebhook(self.bot, dispatcher, secret.get_secret_value())
        if not self.telegram_polling:
            log.info("Telegram polling is off in this worker (--no-telegram-polling)")
            return None
        poller = self.poller = TelegramPoller(self.bot, dispatcher,
                                              retry_seconds=self.restart_delay)
        self._supervise("telegram poller", lambda: poller.run(self._stop))
        return None

    def _supervise(self, name: str, run: Callable[[], Awaitable[None]]) -> None:
        # Never a bare task: one that dies is logged with its traceback and restarted.
        task = Supervised(name, run, self._stop, first_delay=self.restart_delay)
        self.supervised.append(task)
        self._tasks.append(task.start())

    async def _start_http(self, conversation: Conversation,
                          webhook: TelegramWebhook | None) -> None:
        assert self.db is not None
        server = Server(db=self.db, parts=self.parts, clock=self.clock,
                        routes=self.inbound_routes(conversation, webhook))
        self.http = web.AppRunner(build_app(server), access_log=None,
                                  shutdown_timeout=SHUTDOWN_GRACE_SECONDS)
        await self.http.setup()
        site = web.TCPSite(self.http, self.settings.http_host, self.settings.http_port)
        await site.start()
        addresses = self.http.addresses
        self.port = int(addresses[0][1]) if addresses else self.settings.http_port

    def inbound_routes(self, conversation: Conversation,
                       webhook: TelegramWebhook | None) -> list[web.RouteDef]:
        """The routes of each configured channel adapter, for the HTTP server to mount."""
        assert self.db is not None
        routes: list[web.RouteDef] = []
        token = self.settings.twilio_auth_token
        if token is not None:
            routes += TwilioInbound(conversation, self.db, self.clock, self.settings.public_url,
                                    token.get_secret_value()).routes()
        if webhook is not None:
            routes += webhook.routes()
        if self.wechat is not None:
            routes += self.wechat.routes(conversation)
        if self.wecom is not None:
            routes += wecom_callback(self.settings, conversation, self.clock,
                                     self.wecom).routes()
        return routes

    def parts(self) -> dict[str, bool]:
        """Whether each background part is working (for /healthz; the database is pinged
        there): the scheduler, the dispatcher, every supervised task, and the Telegram poller
        having completed a getUpdates within ENGAGE_TELEGRAM_STALE_SECONDS."""
        runner = self.runner
        health = {"scheduler": runner is not None and runner.scheduler_running,
                  "dispatcher": runner is not None and runner.dispatcher_running,
                  "tasks": all(task.running for task in self.supervised)}
        if self.poller is not None:
            health["telegram"] = not self.poller.stale(self.settings.telegram_stale_seconds)
        return health

    def alive(self) -> bool:
        """Whether every background part is working."""
        return all(self.parts().values())

    async def _sweep(self, conversation: Conversation) -> None:
        # Messages stored but never handled (a crash in between): all of them at once at
        # start-up, then every minute those older than a minute (a worker has the newer ones).
        older_than = timedelta(0)
        while not self._stop.is_set():
            while await conversation.handle_pending(older_than=older_than,
                                                    handle=self._handle_firmly(conversation)
                                                    ) == PENDING_BATCH:
                if self._stop.is_set():
                    return
            older_than = timedelta(seconds=PENDING_SWEEP_SECONDS)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=PENDING_SWEEP_SECONDS)

    @staticmethod
    def _handle_firmly(conversation: Conversation) -> Callable[[InboundEvent], Awaitable[object]]:
        async def handle(event: InboundEvent) -> object:
            return await inbox.handle_firmly(conversation, event)
        return handle

    async def stop(self) -> None:
        """Stop taking input, let in-flight work finish, leave the rest queued; idempotent."""
        self._stop.set()
        if self._tasks:  # the poller finishes the update it is handling, then returns
            await asyncio.gather(*self._tasks, return_exceptions=True)
            self._tasks.clear()
        if self.http is not None:  # no new requests; in-flight webhooks finish
            await self.http.cleanup()
            self.http = None
        if self.runner is not None:  # the running tick commits, in-flight sends finish
            await self.runner.stop()
            self.runner = None
        if self.bot is not None:
            await self.bot.session.close()
            self.bot = None
        if self.sms is not None:
            await self.sms.close()
            self.sms = None
        if self.wechat is not None:
            await self.wechat.close()
            self.wechat = None
        if self.wecom is not None:
            await self.wecom.close()
            self.wecom = None
        if self.db is not None:
            await self.db.dispose()
            self.db = None

    async def serve(self, stop: asyncio.Event) -> None:
        """Run until `stop` is set."""
        await self.start()
        try:
            await stop.wait()
        finally:
            log.info("engage is stopping")
            await self.stop()

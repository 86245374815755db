"""Fixtures starting the fake provider APIs, and a dispatcher without rate limits for tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

import pytest

from bot.channels.twilio import SmsChannel
from fakes.loopback import fixture
from fakes.telegram_api import FakeTelegramAPI
from fakes.twilio_api import FakeTwilioAPI
from fakes.webhooks import PUBLIC_URL
from messages.channel import Channel
from scheduler.dispatcher import OutboxSender
from scheduler.ratelimit import ChannelRate
from storage.db import Database
from trial.clock import Clock
from trial.protocol import Protocol

TOKEN = "42:TEST-TOKEN-secret"
ACCOUNT = "AC" + "1" * 32
AUTH_TOKEN = "twilio-auth-token-secret"
SERVICE = "MG" + "2" * 32


fake_telegram = fixture("fake_telegram", FakeTelegramAPI)
fake_twilio = fixture("fake_twilio", FakeTwilioAPI)


@pytest.fixture
async def sms(fake_twilio: FakeTwilioAPI) -> AsyncIterator[SmsChannel]:
    """The real Twilio SMS channel against the fake API, status callbacks to our own server."""
    channel = SmsChannel(account_sid=ACCOUNT, auth_token=AUTH_TOKEN,
                         api_url=fake_twilio.base_url,
                         status_callback=f"{PUBLIC_URL}/twilio/status",
                         messaging_service_sid=SERVICE)
    yield channel
    await channel.close()


def outbox_sender(db: Database, protocol: Protocol, channels: Mapping[str, Channel],
               clock: Clock) -> OutboxSender:
    """The real dispatcher, unthrottled so tests do not wait for rate-limit slots."""
    return OutboxSender(db, protocol, channels, clock, worker_id="test",
                      rates={name: ChannelRate(0.0) for name in ("telegram", "sms")})

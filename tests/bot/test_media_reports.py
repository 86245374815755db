"""Photos, voice notes and other media from patients (issue 15, acceptance 5): stored by
reference, answered, a routine report and alert staff see in /alerts, the caption triaged as text
(an urgent caption pages), and `/media N` resends the file to the staff member's chat, within
the site rule. Through the real aiogram Bot polling the fake Bot API, a real Twilio-signed MMS
webhook, and the real dispatcher sending to the fakes; both databases."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from aiogram import Bot
from sqlalchemy import select

from bot.channels.telegram import TelegramChannel, build_dispatcher
from bot.channels.telegram.webhook import SECRET_HEADER, TelegramWebhook
from bot.channels.twilio.inbound import TwilioInbound
from bot.conversation import Conversation, InboundEvent
from bot.http import Server
from engage.clock import SimulatedClock
from fakes.polling import Polling
from fakes.servers import ACCOUNT, AUTH_TOKEN, outbox_sender
from fakes.telegram_api import FakeTelegramAPI
from fakes.webhooks import PUBLIC_URL, http_client, post_signed
from messages import catalogue
from scheduler.dispatcher import OutboxSender
from storage.audit import Actor
from storage.db import Database
from storage.models import (
    Alert,
    AuditEntry,
    InboundMessage,
    OutboundMessage,
    Site,
    Staff,
    SymptomReport,
)
from study import contacts, digest, exports
from tests.factories import add_site, add_staff, enrol
from trial.protocol import Protocol

PATIENT = 811
COORDINATOR = 8011
OTHER_SITE_STAFF = 8021
PHONE = "+8613800000811"


class World:
    """One site (BJ01) with a coordinator and a patient linked on Telegram, another site's
    coordinator, the poller and the dispatcher."""

    def __init__(self, db: Database, protocol: Protocol, clock: SimulatedClock, bot: Bot,
                 fake: FakeTelegramAPI) -> None:
        self.db, self.protocol, self.clock, self.fake = db, protocol, clock, fake
        self.sender: OutboxSender = outbox_sender(db, protocol, {"telegram": TelegramChannel(bot)},
                                             clock)
        self.core = Conversation(db, protocol, clock)
        self.polling: Polling | None = None
        self.bot = bot

    async def setup(self) -> None:
        now = self.clock.now()
        await add_site(self.db, now)
        await add_site(self.db, now, site="SH02")
        await add_staff(self.db, now, telegram_id=COORDINATOR)
        await add_staff(self.db, now, telegram_id=OTHER_SITE_STAFF, site="SH02")
        enrolled = await enrol(self.db, self.protocol, now, phone=PHONE)
        await self.core.handle(InboundEvent("telegram", "link", str(PATIENT),
                                            f"/start {enrolled.code}", None, now,
                                            {"chat_id": PATIENT}))
        self.polling = Polling(self.bot, self.core, self.clock, self.fake)

    async def send(self, update: dict[str, Any]) -> None:
        """One update through getUpdates, handled, and what it queued sent."""
        assert self.polling is not None
        self.clock.advance(timedelta(seconds=5))
        await self.polling.handled(self.fake.inject(update))
        await self.sender.run_once()

    async def close(self) -> None:
        if self.polling is not None:
            await self.polling.close()


@pytest.fixture
async def world(db: Database, protocol: Protocol, clock: SimulatedClock, bot: Bot,
                fake_telegram: FakeTelegramAPI) -> AsyncIterator[World]:
    world = World(db, protocol, clock, bot, fake_telegram)
    await world.setup()
    yield world
    await world.close()


def texts(fake: FakeTelegramAPI, chat: int) -> list[str]:
    return [c.params.get("text") or c.params.get("caption") or "" for c in fake.calls
            if str(c.params.get("chat_id")) == str(chat) and c.method.startswith("send")]


async def alerts_of(db: Database) -> list[Alert]:
    async with db.read() as session:
        return list((await session.execute(select(Alert).order_by(Alert.id))).scalars())


async def last_inbound(db: Database, sender: str) -> InboundMessage:
    async with db.read() as session:
        return (await session.execute(select(InboundMessage).where(
            InboundMessage.sender == sender).order_by(InboundMessage.id.desc()).limit(1))
        ).scalar_one()


async def test_a_photo_opens_a_routine_report_in_alerts_and_media_resends_it(
        world: World, fake_telegram: FakeTelegramAPI, db: Database) -> None:
    await world.send(fake_telegram.media_update(PATIENT, "photo", file_id="AgACphoto-rash-1",
                                                language_code="en"))
    row = await last_inbound(db, str(PATIENT))
    assert row.outcome == "report"
    (media,) = row.payload["media"]
    assert media["kind"] == "photo"
    assert media["reference"] == "AgACphoto-rash-1"
    assert media["detail"]["file_unique_id"]
    (alert,) = await alerts_of(db)
    assert (alert.kind, alert.tier, alert.pages) == ("media", "routine", 0)
    async with db.read() as session:
        report = await session.get(SymptomReport, alert.report_id)
    assert report is not None
    assert report.inbound_id == row.id
    assert report.tier == "routine"
    assert report.parsed["media"][0]["reference"] == "AgACphoto-rash-1"
    # The patient is answered: the team will see it; describe symptoms in words; 120.
    (answer,) = texts(fake_telegram, PATIENT)[-1:]
    assert answer == catalogue.render("media.received", "en",
                                      kinds=catalogue.render("media.kind_photo", "en"))
    assert "120" in answer
    assert not texts(fake_telegram, COORDINATOR)  # routine: not paged

    await world.send(fake_telegram.message_update(COORDINATOR, "/alerts"))
    listed = texts(fake_telegram, COORDINATOR)
    assert f"#{alert.id}" in listed[-1]
    assert f"/media {alert.id}" in listed[-1]

    await world.send(fake_telegram.message_update(COORDINATOR, f"/media {alert.id}"))
    (forward,) = fake_telegram.sent("sendPhoto", COORDINATOR)
    assert forward.params["photo"] == "AgACphoto-rash-1"  # by file_id: nothing downloaded
    assert f"#{alert.id}" in forward.params["caption"]
    assert "S001" in forward.params["caption"]
    async with db.read() as session:
        audited = (await session.execute(select(AuditEntry).where(
            AuditEntry.action == "media_forward"))).scalars().one()
        symptoms = [r async for r in exports.symptom_rows(session)]
        messages = [dict(zip(exports.MESSAGE_COLUMNS, r, strict=True))
                    async for r in exports.message_rows(session)]
        site = await session.get(Site, "BJ01")
        assert site is not None
        _header, lines = digest.render(await digest.gather(session, world.protocol, site,
                                                          now=world.clock.now()), "en")
    assert "AgACphoto-rash-1" in (audited.new_value or "")
    assert any("AgACphoto-rash-1" in str(r) for r in symptoms)  # the exports list it
    assert [m["media"] for m in messages if m["direction"] == "in" and m["media"]] == [
        "photo AgACphoto-rash-1"]
    assert [m["media"] for m in messages if m["direction"] == "out" and m["media"]] == [
        "photo AgACphoto-rash-1"]  # the forward, by reference
    # The digest lists the alert (and how to see the photo) and the report to review.
    assert any(f"#{alert.id}" in line and f"/media {alert.id}" in line for line in lines)
    assert f"#{report.id} S001" in "\n".join(lines)
    assert "[photo]" in "\n".join(lines)


async def test_a_voice_note_by_webhook_opens_the_same_routine_report(
        world: World, fake_telegram: FakeTelegramAPI, db: Database, bot: Bot,
        clock: SimulatedClock) -> None:
    update = {"update_id": 99001, **fake_telegram.media_update(PATIENT, "voice",
                                                               file_id="AwACwebhook")}
    server = Server(db=db, routes=TelegramWebhook(
        bot, build_dispatcher(world.core, clock), "media-secret").routes())
    async with http_client(server) as client:
        response = await client.post("/telegram/webhook", json=update,
                                     headers={SECRET_HEADER: "media-secret"})
        assert response.status == 200
    row = await last_inbound(db, str(PATIENT))
    assert row.payload["media"][0]["reference"] == "AwACwebhook"
    (alert,) = await alerts_of(db)
    assert (alert.kind, alert.tier) == ("media", "routine")


async def test_a_voice_note_opens_a_routine_report_and_media_sends_the_voice(
        world: World, fake_telegram: FakeTelegramAPI, db: Database) -> None:
    await world.send(fake_telegram.media_update(PATIENT, "voice", file_id="AwACvoice-1"))
    row = await last_inbound(db, str(PATIENT))
    assert row.payload["media"][0] == {
        "kind": "voice", "reference": "AwACvoice-1", "mime": "audio/ogg",
        "detail": {"file_unique_id": "uAwACvoice-1", "file_size": 40000, "duration": 7},
        "channel": "telegram"}
    (alert,) = await alerts_of(db)
    assert (alert.kind, alert.tier) == ("media", "routine")
    answer = texts(fake_telegram, PATIENT)[-1]
    assert answer == catalogue.render("media.received", "en",
                                      kinds=catalogue.render("media.kind_voice", "en"))
    await world.send(fake_telegram.message_update(COORDINATOR, "/alerts"))
    assert f"/media {alert.id}" in texts(fake_telegram, COORDINATOR)[-1]
    await world.send(fake_telegram.message_update(COORDINATOR, f"/media {alert.id}"))
    (forward,) = fake_telegram.sent("sendVoice", COORDINATOR)
    assert forward.params["voice"] == "AwACvoice-1"


async def test_a_photo_captioned_fever_and_chills_pages_as_the_words_would(
        world: World, fake_telegram: FakeTelegramAPI, db: Database) -> None:
    await world.send(fake_telegram.media_update(PATIENT, "photo", caption="fever 39.5 chills",
                                                file_id="AgACthermometer", language_code="en"))
    (alert,) = await alerts_of(db)  # one alert: the higher tier wins
    assert (alert.kind, alert.tier) == ("symptom", "same_day")
    assert alert.pages == 1
    (page,) = texts(fake_telegram, COORDINATOR)
    assert "fever 39.5 chills" in page
    assert f"/media {alert.id}" in page
    patient = texts(fake_telegram, PATIENT)
    assert catalogue.render("report.reply_same_day", "en") in patient
    await world.send(fake_telegram.message_update(COORDINATOR, f"/media {alert.id}"))
    (forward,) = fake_telegram.sent("sendPhoto", COORDINATOR)
    assert forward.params["photo"] == "AgACthermometer"


async def test_media_of_another_sites_alert_is_refused(
        world: World, fake_telegram: FakeTelegramAPI, db: Database) -> None:
    await world.send(fake_telegram.media_update(PATIENT, "photo", file_id="AgACprivate"))
    (alert,) = await alerts_of(db)
    await world.send(fake_telegram.message_update(OTHER_SITE_STAFF, f"/media {alert.id}"))
    assert texts(fake_telegram, OTHER_SITE_STAFF) == [
        catalogue.render("alert.error_not_found", "en", id=alert.id)]
    assert not [c for c in fake_telegram.calls if "AgACprivate" in str(c.params)]


async def test_staff_help_says_what_n_is_and_media_alone_explains_itself(
        world: World, fake_telegram: FakeTelegramAPI) -> None:
    await world.send(fake_telegram.message_update(COORDINATOR, "/help"))
    assert "/media N" in texts(fake_telegram, COORDINATOR)[-1]
    await world.send(fake_telegram.message_update(COORDINATOR, "/media"))
    assert texts(fake_telegram, COORDINATOR)[-1] == catalogue.render("media.staff_usage", "en")


async def test_media_asked_on_another_channel_says_where_the_file_is(
        world: World, fake_telegram: FakeTelegramAPI, db: Database,
        clock: SimulatedClock) -> None:
    await world.send(fake_telegram.media_update(PATIENT, "photo", file_id="AgACtelegram-only"))
    (alert,) = await alerts_of(db)
    async with db.write() as session:
        staff = (await session.execute(select(Staff).where(
            Staff.telegram_id == COORDINATOR))).scalar_one()
        await contacts.bind(session, staff, channel="wecom", address="nurse-wang", now=clock.now(),
                            actor=Actor.cli("test"), reason="test")
    handled = await world.core.handle(InboundEvent("wecom", "wc-media-1", "nurse-wang",
                                                   f"/media {alert.id}", None, clock.now()))
    async with db.read() as session:
        (reply,) = (await session.execute(select(OutboundMessage).where(
            OutboundMessage.dedupe_key == f"reply:{handled.inbound_id}:0"))).scalars()
    # A Telegram file id means nothing to WeCom: no attachment, the reply says where it is.
    assert (reply.channel, reply.template_id, reply.image) == (
        "wecom", "media.staff_elsewhere", None)
    assert "Telegram" in reply.body
    assert f"/media {alert.id}" in reply.body


async def test_a_sticker_is_answered_and_reports_nothing(
        world: World, fake_telegram: FakeTelegramAPI, db: Database) -> None:
    await world.send(fake_telegram.media_update(PATIENT, "sticker", file_id="CAACsticker"))
    await world.send(fake_telegram.media_update(PATIENT, "location"))
    row = await last_inbound(db, str(PATIENT))
    assert row.outcome == "media_not_reviewed"
    assert row.payload["media"][0]["reference"] == "39.9087,116.3975"
    assert not await alerts_of(db)
    async with db.read() as session:
        assert not (await session.execute(select(SymptomReport))).scalars().all()
    assert texts(fake_telegram, PATIENT)[-1] == catalogue.render(
        "media.not_reviewed", "en", kinds=catalogue.render("media.kind_location", "en"))


async def test_an_mms_picture_is_a_routine_report_and_media_sends_its_link(
        world: World, fake_telegram: FakeTelegramAPI, db: Database, protocol: Protocol,
        clock: SimulatedClock) -> None:
    url = (f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT}/Messages/"
           f"MM{'b' * 32}/Media/ME{'c' * 32}")
    form = {"MessageSid": "MM" + "b" * 32, "AccountSid": ACCOUNT, "From": PHONE,
            "To": "+15005550006", "Body": "", "NumMedia": "1", "MediaUrl0": url,
            "MediaContentType0": "image/jpeg"}
    server = Server(db=db, routes=TwilioInbound(world.core, db, clock, PUBLIC_URL,
                                                AUTH_TOKEN).routes())
    async with http_client(server) as client:
        response = await post_signed(client, "/twilio/sms", form, AUTH_TOKEN)
        assert response.status == 200
    row = await last_inbound(db, PHONE)
    assert row.payload["media"] == [{"kind": "photo", "reference": url, "mime": "image/jpeg",
                                     "channel": "sms"}]
    async with db.read() as session:
        reply = (await session.execute(select(OutboundMessage).where(
            OutboundMessage.dedupe_key == f"reply:{row.id}:0"))).scalar_one()
    assert reply.template_id == "media.received"
    (alert,) = await alerts_of(db)
    assert (alert.kind, alert.tier) == ("media", "routine")
    await world.send(fake_telegram.message_update(COORDINATOR, f"/media {alert.id}"))
    assert url in texts(fake_telegram, COORDINATOR)[-1]
    assert not fake_telegram.sent("sendPhoto", COORDINATOR)


async def test_photos_of_one_album_make_one_alert_and_media_sends_them_all(
        world: World, fake_telegram: FakeTelegramAPI, db: Database) -> None:
    for n in range(3):
        await world.send(fake_telegram.media_update(PATIENT, "photo", file_id=f"AgACalbum{n}"))
    (alert,) = await alerts_of(db)
    await world.send(fake_telegram.message_update(COORDINATOR, f"/media {alert.id}"))
    await asyncio.sleep(0)
    assert [c.params["photo"] for c in fake_telegram.sent("sendPhoto", COORDINATOR)] == [
        "AgACalbum0", "AgACalbum1", "AgACalbum2"]

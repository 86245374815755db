"""Hostile input through the HTTP server: bodies too big (also without a Content-Length),
malformed and non-UTF-8 forms, a huge message, unknown senders, link-code guessing, staff
commands from a patient, and SQL-looking text.

Already covered elsewhere (not repeated here): forged, tampered, missing and wrong-URL Twilio
signatures and a wrong Telegram secret (tests/bot/channels/twilio/test_http_twilio.py,
tests/bot/channels/telegram/test_http_telegram.py); a body over the limit with a Content-Length
(tests/bot/channels/twilio/test_http_twilio.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote_plus

import pytest
from aiogram import Bot
from sqlalchemy import func, select

from bot.channels.telegram import build_dispatcher, make_bot
from bot.channels.telegram.webhook import SECRET_HEADER, TelegramWebhook
from bot.channels.twilio import SmsChannel
from bot.channels.twilio.inbound import SIGNATURE_HEADER, TwilioInbound
from bot.conversation import Conversation
from bot.http import Server
from engage.clock import SimulatedClock
from fakes.servers import ACCOUNT, AUTH_TOKEN, SERVICE, TOKEN, outbox_sender
from fakes.telegram_api import FakeTelegramAPI
from fakes.twilio_api import FakeTwilioAPI
from fakes.webhooks import PUBLIC_URL, http_client, post_signed, sign
from messages import catalogue
from storage.db import Database
from storage.models import (
    Alert,
    InboundMessage,
    LinkCode,
    OutboundMessage,
    Patient,
    Site,
    Staff,
    SymptomReport,
)
from study.reports import receive_report
from tests.factories import add_site, add_staff, enrol
from trial.protocol import Protocol

PHONE = "+8613800000001"
STRANGER = "+447700900123"
SECRET = "hostile-secret"
_sids = iter(range(1, 1_000_000))


def _server(db: Database, protocol: Protocol, clock: SimulatedClock,
            bot: Bot | None = None) -> Server:
    core = Conversation(db, protocol, clock)
    webhook = TelegramWebhook(bot, build_dispatcher(core, clock), SECRET) if bot else None
    routes = TwilioInbound(core, db, clock, PUBLIC_URL, AUTH_TOKEN).routes()
    return Server(db=db, routes=routes + (webhook.routes() if webhook else []))


def _form(body: str | None, *, sender: str | None = PHONE,
          sid: str | None = None) -> dict[str, str]:
    form = {"MessageSid": sid or f"SM{next(_sids):032d}", "AccountSid": ACCOUNT,
            "To": "+15005550006", "NumMedia": "0"}
    if sender is not None:
        form["From"] = sender
    if body is not None:
        form["Body"] = body
    return form


async def _count(db: Database, model: type, *where: Any) -> int:
    async with db.read() as session:
        return int((await session.execute(
            select(func.count()).select_from(model).where(*where))).scalar_one())


async def _replies(db: Database) -> list[OutboundMessage]:
    async with db.read() as session:
        return list((await session.execute(select(OutboundMessage).order_by(
            OutboundMessage.id))).scalars())


@pytest.fixture
async def patient(db: Database, protocol: Protocol, clock: SimulatedClock) -> int:
    await add_site(db, clock.now())
    return (await enrol(db, protocol, clock.now(), phone=PHONE)).patient_id


# --- size -------------------------------------------------------------------------------------

async def test_a_chunked_body_over_the_limit_is_refused_with_413(
        sqlite_db: Database, protocol: Protocol, clock: SimulatedClock) -> None:
    """No Content-Length to check up front: the limit must hold while the body is read."""
    async def chunks() -> AsyncIterator[bytes]:
        yield b"MessageSid=SM1&From=%2B8613800000001&Body="
        for _ in range(80):
            yield b"x" * 1024

    async with http_client(_server(sqlite_db, protocol, clock)) as client:
        response = await client.post("/twilio/sms", data=chunks(), headers={
            "Content-Type": "application/x-www-form-urlencoded", SIGNATURE_HEADER: "x"})
        assert response.status == 413
    assert await _count(sqlite_db, InboundMessage) == 0


async def test_a_huge_body_under_the_limit_is_stored_verbatim_and_triaged(
        db: Database, protocol: Protocol, clock: SimulatedClock, patient: int) -> None:
    # Far over Twilio's 1,600 characters, yet under 64 kB once form-encoded (9 bytes a CJK one).
    text = ("头痛" * 2000) + " 发烧38.6度 " + ("🙂" * 500)
    async with http_client(_server(db, protocol, clock)) as client:
        response = await post_signed(client, "/twilio/sms", _form(text), AUTH_TOKEN)
        assert response.status == 200
    async with db.read() as session:
        stored = (await session.execute(select(InboundMessage.text))).scalar_one()
        report = (await session.execute(select(SymptomReport))).scalar_one()
    assert stored == text
    assert (report.raw_text, report.tier, report.temperature_c) == (text, "same_day", 38.6)


# --- malformed forms --------------------------------------------------------------------------

@pytest.mark.parametrize("missing", ["From", "MessageSid"])
async def test_a_form_without_its_sender_or_id_is_a_400_and_stores_nothing(
        sqlite_db: Database, protocol: Protocol, clock: SimulatedClock, missing: str) -> None:
    form = _form("HELP")
    del form[missing]
    async with http_client(_server(sqlite_db, protocol, clock)) as client:
        response = await post_signed(client, "/twilio/sms", form, AUTH_TOKEN)
        assert response.status == 400
    assert await _count(sqlite_db, InboundMessage) == 0
    assert await _count(sqlite_db, OutboundMessage) == 0


async def test_a_form_without_a_body_asks_for_text(
        sqlite_db: Database, protocol: Protocol, clock: SimulatedClock) -> None:
    await add_site(sqlite_db, clock.now())
    await enrol(sqlite_db, protocol, clock.now(), phone=PHONE)
    async with http_client(_server(sqlite_db, protocol, clock)) as client:
        response = await post_signed(client, "/twilio/sms", _form(None), AUTH_TOKEN)
        assert response.status == 200
    assert [r.template_id for r in await _replies(sqlite_db)] == ["chat.text_only"]
    assert await _count(sqlite_db, SymptomReport) == 0


async def test_raw_non_utf8_bytes_are_a_400_not_a_server_error(
        sqlite_db: Database, protocol: Protocol, clock: SimulatedClock) -> None:
    await add_site(sqlite_db, clock.now())
    await enrol(sqlite_db, protocol, clock.now(), phone=PHONE)
    raw = b"MessageSid=SM9&From=%2B8613800000001&Body=\xff\xfe\xc3("
    async with http_client(_server(sqlite_db, protocol, clock)) as client:
        response = await client.post("/twilio/sms", data=raw, headers={
            "Content-Type": "application/x-www-form-urlencoded", SIGNATURE_HEADER: "x"})
        assert response.status == 400
    assert await _count(sqlite_db, InboundMessage) == 0


async def test_percent_encoded_invalid_utf8_is_kept_as_replacement_characters(
        sqlite_db: Database, protocol: Protocol, clock: SimulatedClock) -> None:
    await add_site(sqlite_db, clock.now())
    await enrol(sqlite_db, protocol, clock.now(), phone=PHONE)
    form = _form("\ufffd\ufffd38.6")  # what %FF%FE decodes to, as the signature covers it
    raw = "&".join(f"{k}={quote_plus(v)}" for k, v in form.items() if k != "Body")
    raw += "&Body=%FF%FE38.6"
    async with http_client(_server(sqlite_db, protocol, clock)) as client:
        response = await client.post("/twilio/sms", data=raw.encode(), headers={
            "Content-Type": "application/x-www-form-urlencoded",
            SIGNATURE_HEADER: sign(AUTH_TOKEN, PUBLIC_URL + "/twilio/sms", form)})
        assert response.status == 200
    async with sqlite_db.read() as session:
        assert (await session.execute(select(InboundMessage.text))).scalar_one() == \
            "\ufffd\ufffd38.6"
        assert (await session.execute(select(SymptomReport.tier))).scalar_one() == "same_day"


async def test_a_malformed_telegram_update_is_a_400_and_stores_nothing(
        sqlite_db: Database, protocol: Protocol, clock: SimulatedClock,
        fake_telegram: FakeTelegramAPI) -> None:
    bot = make_bot(TOKEN, fake_telegram.base_url)
    try:
        async with http_client(_server(sqlite_db, protocol, clock, bot)) as client:
            for body in (b"{not json", b"[]", b'{"update_id": "x"}', b"\xff\xfe"):
                response = await client.post("/telegram/webhook", data=body, headers={
                    SECRET_HEADER: SECRET, "Content-Type": "application/json"})
                assert response.status == 400, body
    finally:
        await bot.session.close()
    assert await _count(sqlite_db, InboundMessage) == 0


async def test_a_poisoned_telegram_update_does_not_stop_the_updates_behind_it(
        sqlite_db: Database, protocol: Protocol, clock: SimulatedClock,
        fake_telegram: FakeTelegramAPI) -> None:
    from bot.channels.telegram import TelegramPoller

    bot = make_bot(TOKEN, fake_telegram.base_url)
    core = Conversation(sqlite_db, protocol, clock)
    stop = asyncio.Event()
    poller = asyncio.create_task(TelegramPoller(bot, build_dispatcher(core, clock), timeout=1,
                                                retry_seconds=0.05).run(stop))
    try:
        fake_telegram.inject(fake_telegram.message_update(4242, "fever \ud800 38.6"))
        after = fake_telegram.inject(fake_telegram.message_update(4243, "hello"))
        await fake_telegram.wait_confirmed(after, within=3.0)
    finally:
        stop.set()
        await asyncio.wait_for(poller, 5)
        await bot.session.close()
    async with sqlite_db.read() as session:
        texts = set((await session.execute(select(InboundMessage.text))).scalars())
    assert texts == {"fever \ufffd 38.6", "hello"}


# --- strangers, guessing, privilege -------------------------------------------------------------

async def test_an_unknown_number_gets_one_neutral_sms_however_often_and_fast_it_writes(
        db: Database, protocol: Protocol, clock: SimulatedClock,
        fake_twilio: FakeTwilioAPI) -> None:
    await add_site(db, clock.now())
    texts = ["hello", "STOP", "发烧38.6度", "/alerts", "1", "HELP", "TAKEN", "REPORT"] * 2
    async with http_client(_server(db, protocol, clock)) as client:
        responses = await asyncio.gather(*(post_signed(
            client, "/twilio/sms", _form(text, sender=STRANGER), AUTH_TOKEN) for text in texts))
        assert [r.status for r in responses] == [200] * len(texts)
        sms = SmsChannel(account_sid=ACCOUNT, auth_token=AUTH_TOKEN,
                         api_url=fake_twilio.base_url,
                         status_callback=f"{PUBLIC_URL}/twilio/status",
                         messaging_service_sid=SERVICE)
        try:
            sender = outbox_sender(db, protocol, {"sms": sms}, clock)
            await sender.run_once()
            response = await post_signed(client, "/twilio/sms", _form("again?", sender=STRANGER),
                                         AUTH_TOKEN)
            assert response.status == 200
            await sender.run_once()
        finally:
            await sms.close()
    # One neutral answer, ever; but a text that needs the study team (the fever, twice) gets
    # the safety reply every time, and one "unregistered sender" alert (issue 14).
    bodies = sorted(r.params["Body"] for r in fake_twilio.sent_to(STRANGER))
    assert bodies == sorted([catalogue.render("common.unknown_sender", "en"),
                             *[catalogue.render("report.unregistered_same_day", "zh")] * 2])
    assert await _count(db, InboundMessage) == len(texts) + 1  # all kept, for the record
    assert await _count(db, SymptomReport) == 0  # no study data from a stranger
    async with db.read() as session:
        alerts = (await session.execute(select(Alert.kind, Alert.sender))).all()
    assert alerts == [("unregistered", STRANGER)]


async def test_guessing_link_codes_through_the_webhook_stops_at_the_limit(
        db: Database, protocol: Protocol, clock: SimulatedClock,
        fake_telegram: FakeTelegramAPI) -> None:
    await add_site(db, clock.now())
    enrolled = await enrol(db, protocol, clock.now())
    limit = protocol.reminders.link_code_attempts_per_hour
    bot = make_bot(TOKEN, fake_telegram.base_url)
    try:
        async with http_client(_server(db, protocol, clock, bot)) as client:
            for n in range(limit + 1):
                # The last try is the right code: past the limit it is not even looked at.
                code = enrolled.code if n == limit else f"GUESS{n:04d}"
                update = fake_telegram.message_update(6666, f"/start {code}",
                                                      update_id=50_000 + n)
                response = await client.post("/telegram/webhook", json=update,
                                             headers={SECRET_HEADER: SECRET})
                assert response.status == 200
    finally:
        await bot.session.close()
    replies = [r.template_id for r in await _replies(db)]
    assert replies == ["chat.link_failed"] * limit + ["chat.link_limited"]
    async with db.read() as session:
        assert (await session.get(Patient, enrolled.patient_id)).telegram_id is None  # type: ignore[union-attr]
        assert (await session.execute(select(LinkCode.used_at))).scalar_one() is None


async def test_staff_commands_from_a_patient_get_the_patient_help_and_change_nothing(
        db: Database, protocol: Protocol, clock: SimulatedClock, patient: int) -> None:
    await add_staff(db, clock.now(), telegram_id=9001)
    async with db.write() as session:
        row = await session.get(Patient, patient)
        assert row is not None
        await receive_report(session, protocol, row, "I can't breathe", now=clock.now(),
                             inbound_id=None)
    async with db.read() as session:
        alert_id = (await session.execute(select(Alert.id))).scalar_one()
    before = len(await _replies(db))
    commands = ["/alerts", f"/ack {alert_id}", f"/resolve {alert_id} nothing to do",
                "/adherence", "/patient S001", "/digest BJ01"]
    async with http_client(_server(db, protocol, clock)) as client:
        for command in commands:
            response = await post_signed(client, "/twilio/sms", _form(command), AUTH_TOKEN)
            assert response.status == 200
    replies = (await _replies(db))[before:]
    assert [r.template_id for r in replies] == ["chat.help"] * len(commands)
    assert all(r.address == PHONE for r in replies)
    async with db.read() as session:
        alert = await session.get(Alert, alert_id)
    assert alert is not None
    assert (alert.status, alert.acknowledged_by, alert.resolved_by) == ("open", None, None)


async def test_sql_looking_text_is_stored_verbatim_and_the_tables_are_intact(
        db: Database, protocol: Protocol, clock: SimulatedClock, patient: int) -> None:
    await add_staff(db, clock.now(), telegram_id=9001)
    hostile = "'; DROP TABLE patients; -- 发烧38.6度 \" OR 1=1; DELETE FROM staff; --"
    hostile_sender = "+1'; DROP TABLE sites;--"
    async with http_client(_server(db, protocol, clock)) as client:
        assert (await post_signed(client, "/twilio/sms", _form(hostile), AUTH_TOKEN)
                ).status == 200
        assert (await post_signed(client, "/twilio/sms", _form(hostile, sender=hostile_sender),
                                  AUTH_TOKEN)).status == 200
    async with db.read() as session:
        stored = (await session.execute(select(InboundMessage.sender, InboundMessage.text)
                                        .order_by(InboundMessage.id))).all()
        report = (await session.execute(select(SymptomReport))).scalar_one()
    assert [tuple(r) for r in stored] == [(PHONE, hostile), (hostile_sender, hostile)]
    assert (report.raw_text, report.patient_id, report.tier) == (hostile, patient, "same_day")
    assert await _count(db, Patient) == 1
    assert await _count(db, Staff) == 1
    assert await _count(db, Site) == 1

"""The WeChat channel end to end: signed pushes into our `/wechat` route, the real dispatcher
sending through the adapter to the fake WeChat API (fakes/wechat.py): linking by a QR
code's scene, the reminder as a template message at the dose time, the menu's 服药已完成 or a
typed 已服, the 48-hour rule, the shared access token, a fever report's safety reply."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from bot.channels.wechat import WeChatAPI, WeChatChannel, templates
from bot.channels.wechat.app import WeChat
from bot.conversation import Conversation
from bot.http import Server, build_app
from engage.clock import SimulatedClock
from engage.runtime import wechat_from_settings
from fakes import wechat as fake
from fakes.servers import outbox_sender
from messages.channel import OutgoingMessage, PermanentSendError
from scheduler.dispatcher import OutboxSender
from scheduler.tick import run_tick
from storage.db import Database
from storage.models import Alert, DoseRecord, OutboundMessage, Patient
from study.adherence import patient_adherence
from tests.factories import Enrolled, add_site, add_staff, enrol
from trial.protocol import Protocol

OPENID = "oWx_patient_0000000000000001"


@dataclass
class Account:
    wechat: WeChat
    pusher: fake.Pusher
    dispatcher: OutboxSender

    async def push(self, xml: str) -> None:
        assert await self.pusher.push(xml) == (200, "success")
        await self.wechat.idle()

    async def dispatch(self) -> int:
        return await self.dispatcher.run_once()


@asynccontextmanager
async def account(db: Database, protocol: Protocol, clock: SimulatedClock,
                  api: fake.FakeWeChatAPI, tmp_path: Path) -> AsyncIterator[Account]:
    """Our HTTP server with the WeChat routes, and the dispatcher with the WeChat channel."""
    path = tmp_path / "wechat-templates.toml"
    path.write_text(fake.TEMPLATES_TOML, encoding="utf-8")
    wechat = wechat_from_settings(fake.settings(api.base_url, path), db, clock)
    assert wechat is not None
    conversation = Conversation(db, protocol, clock)
    client = TestClient(TestServer(build_app(Server(db=db, routes=wechat.routes(conversation)))))
    await client.start_server()
    try:
        yield Account(wechat, fake.Pusher(str(client.make_url("/wechat"))),
                      outbox_sender(db, protocol, {"wechat": wechat.channel}, clock))
    finally:
        await wechat.close()
        await client.close()


async def linked(db: Database, protocol: Protocol, clock: SimulatedClock, a: Account,
                 **enrolment: Any) -> Enrolled:
    """A patient enrolled and linked by scanning the QR code of their link code."""
    await add_site(db, clock.now())
    enrolled = await enrol(db, protocol, clock.now(), **enrolment)
    await a.push(fake.event_xml(OPENID, "subscribe", f"qrscene_{enrolled.code}"))
    return enrolled


async def row(db: Database, template_id: str) -> OutboundMessage:
    async with db.read() as session:
        return (await session.execute(select(OutboundMessage).where(
            OutboundMessage.template_id == template_id).order_by(OutboundMessage.id.desc())
        )).scalars().first()  # type: ignore[return-value]


@pytest.mark.parametrize("how", ["menu", "typed"])
async def test_scan_link_reminder_as_template_and_taken_by_menu_or_typed(
        db: Database, protocol: Protocol, clock: SimulatedClock,
        fake_wechat: fake.FakeWeChatAPI, tmp_path: Path, how: str) -> None:
    # 08:00 in Beijing; the dose is at 08:30.
    async with account(db, protocol, clock, fake_wechat, tmp_path) as a:
        enrolled = await linked(db, protocol, clock, a, dose_time="08:30", language="zh")
        await a.dispatch()
        (welcome,) = await fake_wechat.wait_for(openid=OPENID, kind="custom")
        assert (await row(db, "chat.link_ok")).body in welcome.text
        await run_tick(db, protocol, clock.now())
        clock.advance(timedelta(minutes=30))
        await run_tick(db, protocol, clock.now())
        await a.dispatch()
        (reminder,) = await fake_wechat.wait_for(openid=OPENID, kind="template")
        assert reminder.payload["template_id"] == "tmpl-dose"
        queued = await row(db, "dose.reminder")
        assert queued.channel == "wechat"
        assert queued.provider_id == str(reminder.msgid)
        # The fields come from the rendered catalogue text; the answers are printed as words
        # that are understood when typed back (1 = taken).
        assert reminder.payload["data"]["first"]["value"] == queued.body.split("\n")[0]
        assert "1" in reminder.payload["data"]["remark"]["value"]
        clock.advance(timedelta(minutes=5))
        if how == "menu":
            await a.push(fake.event_xml(OPENID, "CLICK", "DOSE_TAKEN"))
        else:
            await a.push(fake.text_xml(OPENID, "已服"))
        await a.dispatch()
        # A reply inside the 48-hour window is a customer-service message.
        ack = await row(db, "dose.taken_ack")
        (_, reply) = await fake_wechat.wait_for(2, openid=OPENID, kind="custom")
        assert ack.body in reply.text
    async with db.read() as session:
        state = (await session.execute(select(DoseRecord.state).where(
            DoseRecord.patient_id == enrolled.patient_id))).scalars().all()
        patient = await session.get(Patient, enrolled.patient_id)
        assert patient is not None
        adherence = await patient_adherence(session, protocol, patient, now=clock.now())
    assert state[0] == "taken"
    assert adherence.counts.taken == 1, adherence


async def test_a_reply_outside_the_48_hour_window_goes_as_a_template_message(
        sqlite_db: Database, protocol: Protocol, clock: SimulatedClock,
        fake_wechat: fake.FakeWeChatAPI, tmp_path: Path) -> None:
    async with account(sqlite_db, protocol, clock, fake_wechat, tmp_path) as a:
        await linked(sqlite_db, protocol, clock, a)
        await a.dispatch()
        await a.push(fake.text_xml(OPENID, "help"))
        clock.advance(timedelta(hours=49))  # the reply waited (the dispatcher was down)
        await a.dispatch()
        (late,) = await fake_wechat.wait_for(openid=OPENID, kind="template")
        assert late.payload["template_id"] == "tmpl-notice"  # the default template
        help_row = await row(sqlite_db, "chat.help")
        assert help_row.body.split("\n")[0] in late.text
        assert len(fake_wechat.sent_to(OPENID, "custom")) == 1  # only the welcome


async def test_without_a_template_a_message_outside_the_window_fails_permanently(
        sqlite_db: Database, protocol: Protocol, clock: SimulatedClock,
        fake_wechat: fake.FakeWeChatAPI) -> None:
    api = WeChatAPI(sqlite_db, clock.now, app_id=fake.APP_ID, app_secret=fake.APP_SECRET,
                    api_url=fake_wechat.base_url)
    channel = WeChatChannel(api, templates.Templates())
    try:
        with pytest.raises(PermanentSendError, match="no template"):
            await channel.send(OutgoingMessage(message_id=1, address=OPENID, text="hi"))
    finally:
        await channel.close()
    assert fake_wechat.sent == []


async def test_two_workers_share_one_token_and_an_expired_one_is_replaced_once(
        db: Database, protocol: Protocol, clock: SimulatedClock,
        fake_wechat: fake.FakeWeChatAPI, tmp_path: Path) -> None:
    async with account(db, protocol, clock, fake_wechat, tmp_path) as a:
        await linked(db, protocol, clock, a)
    # Two workers: two adapters (own HTTP sessions), one database.
    workers = [WeChatChannel(WeChatAPI(db, clock.now, app_id=fake.APP_ID,
                                       app_secret=fake.APP_SECRET,
                                       api_url=fake_wechat.base_url), templates.Templates())
               for _ in range(2)]
    try:
        message = OutgoingMessage(message_id=0, address=OPENID, text="hello", language="en")
        await asyncio.gather(*(w.send(message) for w in workers for _ in range(3)))
        assert fake_wechat.token_calls() == 1
        assert len(fake_wechat.sent_to(OPENID, "custom")) == 6
        fake_wechat.expire_token()  # the next call answers 42001
        await asyncio.gather(*(w.send(message) for w in workers))
        assert fake_wechat.token_calls() == 2  # replaced once, for both workers
        assert len(fake_wechat.sent_to(OPENID, "custom")) == 8  # both retried, sent once each
        refused = [r for r in fake_wechat.requests if r.errcode == 42001]
        assert 1 <= len(refused) <= 2
    finally:
        for w in workers:
            await w.close()


async def test_a_fever_by_wechat_opens_the_urgent_alert_and_the_120_reply_is_customer_service(
        db: Database, protocol: Protocol, clock: SimulatedClock,
        fake_wechat: fake.FakeWeChatAPI, tmp_path: Path) -> None:
    async with account(db, protocol, clock, fake_wechat, tmp_path) as a:
        enrolled = await linked(db, protocol, clock, a, language="zh")
        await add_staff(db, clock.now())
        await a.dispatch()
        await a.push(fake.text_xml(OPENID, "我发烧了，39.5度，浑身发抖"))
        await a.dispatch()
        async with db.read() as session:
            alerts = (await session.execute(select(Alert).where(
                Alert.patient_id == enrolled.patient_id, Alert.kind == "symptom"))
            ).scalars().all()
            replies = (await session.execute(select(OutboundMessage).where(
                OutboundMessage.channel == "wechat", OutboundMessage.lane == "safety"))
            ).scalars().all()
        assert [alert.tier for alert in alerts] == ["same_day"]  # fever: the team today
        assert replies
        sent = fake_wechat.sent_to(OPENID, "custom")
        assert any("120" in s.text for s in sent), [s.text for s in sent]
        assert all(r.status == "sent" for r in replies)


async def test_unfollowed_at_send_time_marks_unreachable(
        sqlite_db: Database, protocol: Protocol, clock: SimulatedClock,
        fake_wechat: fake.FakeWeChatAPI, tmp_path: Path) -> None:
    async with account(sqlite_db, protocol, clock, fake_wechat, tmp_path) as a:
        enrolled = await linked(sqlite_db, protocol, clock, a)
        fake_wechat.unfollowed.add(OPENID)  # 43004: the push of the unfollow was lost
        await a.dispatch()
    async with sqlite_db.read() as session:
        patient = await session.get(Patient, enrolled.patient_id)
        assert patient is not None
        (point,) = patient.contact_points
        assert not point.reachable
        alert = (await session.execute(select(Alert).where(
            Alert.patient_id == enrolled.patient_id))).scalar_one()
    assert alert.kind == "unreachable"

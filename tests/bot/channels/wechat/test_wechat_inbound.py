"""The `/wechat` server URL on our HTTP server, with pushes signed (and encrypted) by wechatpy's
real signer and crypto: verification, forged and replayed pushes, AES mode, linking by a QR
code's scene or by the code typed, unfollowing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import func, select

from bot.channels.wechat.inbound import WeChatInbound
from bot.conversation import Conversation
from bot.http import Server, build_app
from engage.clock import SimulatedClock
from engage.runtime import wechat_from_settings
from fakes import wechat as fake
from storage.db import Database
from storage.models import Alert, ContactPoint, InboundMessage, LinkAttempt, OutboundMessage
from tests.factories import add_site, add_staff, enrol
from trial.protocol import Protocol

OPENID = "oWx_patient_0000000000000001"


@dataclass
class Running:
    client: TestClient
    inbound: WeChatInbound
    pusher: fake.Pusher


@asynccontextmanager
async def running(db: Database, protocol: Protocol, clock: SimulatedClock, *,
                  aes: bool = False, api_url: str = "http://127.0.0.1:9",
                  ) -> AsyncIterator[Running]:
    """Our HTTP server with the WeChat routes (the API address unreachable by default: the
    inbound route must not need it)."""
    wechat = wechat_from_settings(fake.settings(api_url, None, aes=aes), db, clock)
    assert wechat is not None
    conversation = Conversation(db, protocol, clock)
    client = TestClient(TestServer(build_app(Server(db=db, routes=wechat.routes(conversation)))))
    await client.start_server()
    try:
        yield Running(client, wechat.inbound[0],
                      fake.Pusher(str(client.make_url("/wechat")),
                                  aes_key=fake.AES_KEY if aes else None))
    finally:
        await wechat.close()
        await client.close()


async def count(db: Database, model: type, *where: object) -> int:
    async with db.read() as session:
        return int((await session.execute(
            select(func.count()).select_from(model).where(*where))).scalar_one())  # type: ignore[arg-type]


async def contact(db: Database, openid: str = OPENID) -> ContactPoint | None:
    async with db.read() as session:
        return (await session.execute(select(ContactPoint).where(
            ContactPoint.channel == "wechat", ContactPoint.address == openid))
        ).scalar_one_or_none()


async def test_verification_answers_echostr_and_refuses_a_forged_signature(
        sqlite_db: Database, protocol: Protocol, clock: SimulatedClock) -> None:
    async with running(sqlite_db, protocol, clock) as r:
        assert await r.pusher.verify("echo-123") == (200, "echo-123")
        status, _ = await r.pusher.verify("echo-123", forge=True)
        assert status == 403


@pytest.mark.parametrize("aes", [False, True], ids=["plain", "aes"])
async def test_scan_with_the_link_code_as_scene_links_and_a_replay_is_one_row(
        db: Database, protocol: Protocol, clock: SimulatedClock, aes: bool) -> None:
    await add_site(db, clock.now())
    enrolled = await enrol(db, protocol, clock.now())
    async with running(db, protocol, clock, aes=aes) as r:
        xml = fake.event_xml(OPENID, "subscribe", f"qrscene_{enrolled.code}")
        signed = r.pusher.signed(xml)
        assert await r.pusher.push(xml, signed=signed) == (200, "success")
        # WeChat retries a push it had no answer to: the same push again, stored once.
        assert await r.pusher.push(xml, signed=signed) == (200, "success")
        await r.inbound.idle()
    point = await contact(db)
    assert point is not None
    assert (point.owner_kind, point.owner_id, point.reachable) == (
        "patient", enrolled.patient_id, True)
    assert await count(db, InboundMessage, InboundMessage.channel == "wechat") == 1
    async with db.read() as session:
        replies = (await session.execute(select(OutboundMessage.template_id).where(
            OutboundMessage.channel == "wechat", OutboundMessage.address == OPENID))
        ).scalars().all()
    assert replies == ["chat.link_ok"]


@pytest.mark.parametrize("forgery", ["signature", "msg_signature", "plain_in_aes_mode"])
async def test_forged_pushes_get_403_and_change_nothing(
        sqlite_db: Database, protocol: Protocol, clock: SimulatedClock, forgery: str) -> None:
    await add_site(sqlite_db, clock.now())
    enrolled = await enrol(sqlite_db, protocol, clock.now())
    xml = fake.event_xml(OPENID, "subscribe", f"qrscene_{enrolled.code}")
    async with running(sqlite_db, protocol, clock, aes=forgery != "signature") as r:
        query, body = r.pusher.signed(xml)
        if forgery == "signature":
            query = {**query, "signature": "f" * 40}
        elif forgery == "msg_signature":
            query = {**query, "msg_signature": "f" * 40}
        else:
            query, body = fake.Pusher(r.pusher.url).signed(xml)  # plain, validly signed
        status, _ = await r.pusher.push(xml, signed=(query, body))
        assert status == 403
        await r.inbound.idle()
    assert await count(sqlite_db, InboundMessage) == 0
    assert await contact(sqlite_db) is None


async def test_the_code_typed_links_and_wrong_codes_are_limited_as_on_telegram(
        sqlite_db: Database, protocol: Protocol, clock: SimulatedClock) -> None:
    await add_site(sqlite_db, clock.now())
    enrolled = await enrol(sqlite_db, protocol, clock.now())
    async with running(sqlite_db, protocol, clock) as r:
        assert await r.pusher.push(fake.text_xml(OPENID, "ABCD2345")) == (200, "success")
        await r.inbound.idle()
        assert await contact(sqlite_db) is None
        assert await count(sqlite_db, LinkAttempt,
                           LinkAttempt.address == f"wechat:{OPENID}") == 1
        assert await r.pusher.push(fake.text_xml(OPENID, enrolled.code.lower())) == (
            200, "success")
        await r.inbound.idle()
    point = await contact(sqlite_db)
    assert point is not None
    assert point.owner_id == enrolled.patient_id
    async with sqlite_db.read() as session:
        replies = (await session.execute(select(OutboundMessage.template_id).where(
            OutboundMessage.address == OPENID).order_by(OutboundMessage.id))).scalars().all()
    assert replies == ["chat.link_failed", "chat.link_ok"]


async def test_a_stranger_following_gets_one_welcome_a_day(
        sqlite_db: Database, protocol: Protocol, clock: SimulatedClock) -> None:
    await add_site(sqlite_db, clock.now())
    async with running(sqlite_db, protocol, clock) as r:
        for _ in range(2):
            await r.pusher.push(fake.event_xml(OPENID, "subscribe"))
            await r.pusher.push(fake.text_xml(OPENID, "hello"))
        await r.inbound.idle()
    async with sqlite_db.read() as session:
        replies = (await session.execute(select(OutboundMessage.template_id).where(
            OutboundMessage.address == OPENID))).scalars().all()
    assert replies == ["chat.link_send_code"]


async def test_unfollowing_marks_the_patient_unreachable_and_tells_the_coordinator(
        db: Database, protocol: Protocol, clock: SimulatedClock) -> None:
    await add_site(db, clock.now())
    coordinator = await add_staff(db, clock.now())
    enrolled = await enrol(db, protocol, clock.now())
    async with running(db, protocol, clock) as r:
        await r.pusher.push(fake.event_xml(OPENID, "subscribe", f"qrscene_{enrolled.code}"))
        await r.inbound.idle()
        await r.pusher.push(fake.event_xml(OPENID, "unsubscribe"))
        await r.inbound.idle()
        point = await contact(db)
        assert point is not None
        assert not point.reachable
        assert await count(db, Alert, Alert.kind == "unreachable",
                           Alert.patient_id == enrolled.patient_id) == 1
        assert await count(db, OutboundMessage, OutboundMessage.staff_id == coordinator,
                           OutboundMessage.template_id == "delivery.unfollowed") == 1
        # Following again (a plain follow, no scene) makes them reachable again.
        await r.pusher.push(fake.event_xml(OPENID, "subscribe"))
        await r.inbound.idle()
    point = await contact(db)
    assert point is not None
    assert point.reachable


async def test_the_route_needs_no_api_and_a_push_is_stored_before_it_is_handled(
        sqlite_db: Database, protocol: Protocol, clock: SimulatedClock, tmp_path: Path) -> None:
    # The API address is unreachable (port 9): a message is still stored and answered.
    await add_site(sqlite_db, clock.now())
    async with running(sqlite_db, protocol, clock) as r:
        assert await r.pusher.push(fake.text_xml(OPENID, "hello")) == (200, "success")
        assert await count(sqlite_db, InboundMessage) == 1  # stored before the answer
        await r.inbound.idle()
    assert await count(sqlite_db, InboundMessage, InboundMessage.handled_at.is_not(None)) == 1


async def test_each_menu_button_is_understood_by_the_route(
        sqlite_db: Database, protocol: Protocol, clock: SimulatedClock) -> None:
    """The custom menu `engage wechat menu` creates (`inbound.menu()`): a click of each of its
    three buttons is stored as the button's action and handled as such (never the "unknown
    action" answer); a click of a key that is not ours is not stored."""
    from bot.channels.wechat.inbound import MENU, menu

    await add_site(sqlite_db, clock.now())
    enrolled = await enrol(sqlite_db, protocol, clock.now())
    buttons = menu()["button"]
    assert [b["name"] for b in buttons] == ["服药已完成", "报告症状", "帮助"]
    async with running(sqlite_db, protocol, clock) as r:
        await r.pusher.push(fake.event_xml(OPENID, "SCAN", enrolled.code))
        await r.inbound.idle()
        for button in buttons:
            assert button["type"] == "click"
            assert await r.pusher.push(fake.event_xml(OPENID, "CLICK", button["key"])) == (
                200, "success")
            await r.inbound.idle()
        await r.pusher.push(fake.event_xml(OPENID, "CLICK", "SOMEONE_ELSES_KEY"))
        await r.inbound.idle()
    async with sqlite_db.read() as session:
        clicks = (await session.execute(select(InboundMessage).where(
            InboundMessage.channel == "wechat").order_by(InboundMessage.id))).scalars().all()
    clicks = [c for c in clicks if c.payload.get("event") == "click"]
    assert [c.patient_id for c in clicks] == [enrolled.patient_id] * 3
    assert [c.payload["action"] for c in clicks] == [MENU[b["key"]] for b in buttons] == [
        "dose:taken", "report:start", "help"]
    assert [c.outcome for c in clicks] == ["dose_taken", "report_start", "help"]

"""Issue 20, acceptance 2 across both Tencent channels: a patient on WeChat reports a fever (a
signed push into `/wechat`), and the site's coordinator, on WeCom only, is paged within 2 s as
a template card with buttons; the button event (a signed push into `/wecom`) acknowledges the
alert; the same push replayed is one row and one acknowledgement. Everything real but the two
providers (fakes/wechat.py, fakes/wecom.py): our HTTP server, the conversation core and the
outbox sender running."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import func, select

from bot.channels.wecom import WeComAPI, WeComChannel
from bot.channels.wecom.callback import PATH, WeComCallback
from bot.conversation import Conversation
from bot.http import Server, build_app
from engage.clock import SimulatedClock
from engage.runtime import wechat_from_settings
from fakes import wechat as fake_wx
from fakes import wecom
from scheduler import dispatcher as sending
from scheduler.ratelimit import ChannelRate
from storage.db import Database
from storage.models import Alert, AlertEvent, InboundMessage, Staff
from study import contacts
from tests.factories import ACTOR, add_site, add_staff, enrol
from trial.protocol import Protocol

OPENID = "oWx_patient_0000000000000042"
USERID = "wangwu"  # the coordinator's WeCom userid


async def _rows(db: Database, model: type, *where: object) -> int:
    async with db.read() as session:
        return int((await session.execute(select(func.count()).select_from(model).where(
            *where))).scalar_one())  # type: ignore[arg-type]


@pytest.mark.timeout(300)
async def test_a_fever_by_wechat_pages_wecom_within_2_s_and_the_button_acknowledges_it(
        db: Database, protocol: Protocol, clock: SimulatedClock, tmp_path: Path,
        fake_wechat: fake_wx.FakeWeChatAPI, fake_wecom: wecom.FakeWeComAPI) -> None:
    wx = fake_wechat
    templates = tmp_path / "wechat-templates.toml"
    templates.write_text(fake_wx.TEMPLATES_TOML, encoding="utf-8")
    now = clock.now()
    await add_site(db, now)
    enrolled = await enrol(db, protocol, now, language="zh")
    coordinator = await add_staff(db, now, telegram_id=None, language="zh")  # WeCom only
    async with db.write() as session:
        staff = await session.get(Staff, coordinator)
        assert staff is not None
        await contacts.bind(session, staff, channel="wecom", address=USERID, now=now,
                            actor=ACTOR, reason="test")
    wechat = wechat_from_settings(fake_wx.settings(wx.base_url, templates), db, clock)
    assert wechat is not None
    staff_app = WeComChannel(WeComAPI(db, clock.now, corp_id=wecom.CORP_ID,
                                      agent_id=wecom.AGENT_ID, secret=wecom.SECRET,
                                      api_url=fake_wecom.base_url))
    sender = sending.OutboxSender(
        db, protocol, {"wechat": wechat.channel, "wecom": staff_app}, clock, worker_id="test",
        poll_interval=0.05, rates={"wechat": ChannelRate(0.0), "wecom": ChannelRate(0.0)})
    conversation = Conversation(db, protocol, clock, wake=sender.wake)
    callback = WeComCallback.create(conversation, clock, token=wecom.TOKEN,
                                    aes_key=wecom.AES_KEY, corp_id=wecom.CORP_ID,
                                    channel=staff_app)
    client = TestClient(TestServer(build_app(Server(db=db, routes=[
        *wechat.routes(conversation), *callback.routes()]))))
    await client.start_server()
    stop = asyncio.Event()
    running = asyncio.create_task(sender.run(stop))
    try:
        patient = fake_wx.Pusher(str(client.make_url("/wechat")))
        assert await patient.push(fake_wx.event_xml(
            OPENID, "subscribe", f"qrscene_{enrolled.code}")) == (200, "success")
        await wx.wait_for(1, openid=OPENID, kind="custom")  # linked: the welcome
        started = time.monotonic()
        assert await patient.push(fake_wx.text_xml(OPENID, "我发烧了，39.5度，浑身发抖")) == (
            200, "success")
        (card,) = await fake_wecom.wait_for(1, within=10, userid=USERID,
                                            msgtype="template_card")
        assert card.at - started < 2.0, f"the page took {card.at - started:.2f} s"
        async with db.read() as session:
            alert = (await session.execute(select(Alert))).scalars().one()
        assert alert.patient_id == enrolled.patient_id
        buttons = card.payload["template_card"]["button_list"]
        assert [b["key"] for b in buttons] == [f"alert:ack:{alert.id}",
                                               f"alert:resolve:{alert.id}"]
        # The patient's safety reply went by WeChat, inside the window: customer service.
        await wx.wait_for(2, openid=OPENID, kind="custom")

        press = wecom.CallbackPusher().press(card, f"alert:ack:{alert.id}")
        for _ in range(3):  # the first press, then WeCom retrying it (or a replay)
            response = await client.post(PATH, params=press.query, data=press.body)
            assert response.status == 200
            await callback.idle()
        async with db.read() as session:
            acknowledged = await session.get(Alert, alert.id)
        assert acknowledged is not None
        assert (acknowledged.status, acknowledged.acknowledged_by) == (
            "acknowledged", coordinator)
        assert await _rows(db, InboundMessage, InboundMessage.channel == "wecom") == 1
        assert await _rows(db, AlertEvent, AlertEvent.kind == "acknowledged") == 1
    finally:
        stop.set()
        await asyncio.wait_for(running, 10)
        await wechat.close()
        await staff_app.close()
        await client.close()

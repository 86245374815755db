"""The WeCom app's callback URL on our HTTP server, with the dispatcher running against the fake
WeCom API (issue 20, acceptance 2): a fever report by SMS pages the site's coordinator on WeCom
within 2 s as a template card with buttons; the button acknowledges it (audited with the staff
member); a coordinator of another site pressing it is refused; a forged push is 403 and stores
nothing, a replayed push is one row; `/alerts` typed in the app comes back by WeCom; an expired
token is replaced once and the page retried."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient
from sqlalchemy import func, select

from bot.channels.twilio.inbound import TwilioInbound
from bot.channels.wecom import WeComAPI, WeComChannel
from bot.channels.wecom.callback import PATH, WeComCallback
from bot.conversation import Conversation
from bot.http import Server
from engage.clock import SimulatedClock
from fakes.servers import AUTH_TOKEN
from fakes.webhooks import PUBLIC_URL, http_client, post_signed
from fakes.wecom import (
    AES_KEY,
    AGENT_ID,
    CORP_ID,
    SECRET,
    TOKEN,
    CallbackPusher,
    FakeWeComAPI,
    Push,
    Sent,
)
from scheduler.dispatcher import OutboxSender
from scheduler.ratelimit import ChannelRate
from storage.db import Database
from storage.models import Alert, AlertEvent, AuditEntry, InboundMessage, OutboundMessage, Staff
from study import contacts
from tests.factories import ACTOR, add_site, add_staff, enrol
from trial.protocol import Protocol

PATIENT_PHONE = "+8613900000007"
SITE_PHONE = "+861012345678"
HERE = "zhangsan"  # the S01 coordinator's WeCom userid
THERE = "lisi"  # a coordinator of S02


@dataclass
class Stack:
    client: TestClient
    callback: WeComCallback
    pusher: CallbackPusher
    coordinator: int
    other: int

    async def push(self, push: Push) -> ClientResponse:
        return await self.client.post(PATH, params=push.query, data=push.body)


async def bind_wecom(db: Database, staff_id: int, userid: str, now: object) -> None:
    async with db.write() as session:
        staff = await session.get(Staff, staff_id)
        assert staff is not None
        await contacts.bind(session, staff, channel="wecom", address=userid,
                            now=now, actor=ACTOR, reason="test")  # type: ignore[arg-type]


@pytest.fixture
async def stack(db: Database, protocol: Protocol, clock: SimulatedClock, fake_wecom: FakeWeComAPI,
                sms: object) -> AsyncIterator[Stack]:
    now = clock.now()
    await add_site(db, now, site="S01", phone=SITE_PHONE)
    await add_site(db, now, site="S02", phone="+862112345678")
    # Staff on WeCom only: no Telegram, no phone.
    coordinator = await add_staff(db, now, telegram_id=None, site="S01", language="zh")
    other = await add_staff(db, now, telegram_id=None, site="S02", language="zh")
    await bind_wecom(db, coordinator, HERE, now)
    await bind_wecom(db, other, THERE, now)
    await enrol(db, protocol, now, subject="S01-007", site="S01", phone=PATIENT_PHONE,
                language="zh", dose_time="21:00")
    wecom = WeComChannel(WeComAPI(db, clock.now, corp_id=CORP_ID, agent_id=AGENT_ID,
                                  secret=SECRET, api_url=fake_wecom.base_url))
    dispatcher = OutboxSender(db, protocol, {"wecom": wecom, "sms": sms}, clock,  # type: ignore
                            worker_id="wecom-test", poll_interval=0.05,
                            rates={"sms": ChannelRate(0.0), "wecom": ChannelRate(0.0)})
    conversation = Conversation(db, protocol, clock, wake=dispatcher.wake)
    callback = WeComCallback.create(conversation, clock, token=TOKEN, aes_key=AES_KEY,
                                    corp_id=CORP_ID, channel=wecom)
    server = Server(db=db, routes=[
        *TwilioInbound(conversation, db, clock, PUBLIC_URL, AUTH_TOKEN).routes(),
        *callback.routes()])
    stop = asyncio.Event()
    sending = asyncio.create_task(dispatcher.run(stop))
    try:
        async with http_client(server) as client:
            yield Stack(client, callback, CallbackPusher(), coordinator, other)
            await callback.idle()
    finally:
        stop.set()
        await asyncio.wait_for(sending, 10)
        await wecom.close()


async def until(condition: Callable[[], Awaitable[bool]], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not await condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def count(db: Database, model: type, *where: object) -> int:
    async with db.read() as session:
        return int((await session.execute(select(func.count()).select_from(model).where(
            *where))).scalar_one())  # type: ignore[arg-type]


async def alert_of(db: Database) -> Alert:
    async with db.read() as session:
        return (await session.execute(select(Alert))).scalars().one()


async def fever_page(stack: Stack, fake: FakeWeComAPI) -> tuple[Sent, float]:
    """The patient texts a fever by SMS; the WeCom card that pages the coordinator, and how
    long it took (real time, from the webhook's answer)."""
    started = time.monotonic()
    response = await post_signed(stack.client, "/twilio/sms", {
        "MessageSid": "SM" + "f" * 32, "From": PATIENT_PHONE, "To": SITE_PHONE,
        "Body": "发烧38.6度，浑身发冷", "NumMedia": "0"}, AUTH_TOKEN)
    assert response.status == 200
    cards = await fake.wait_for(1, within=10, userid=HERE, msgtype="template_card")
    return cards[0], fake.sent_to(HERE, "template_card")[0].at - started


@pytest.mark.timeout(300)
async def test_a_fever_pages_wecom_within_2_s_and_the_button_acknowledges_it_in_scope(
        db: Database, stack: Stack, fake_wecom: FakeWeComAPI) -> None:
    card, seconds = await fever_page(stack, fake_wecom)
    assert seconds < 2.0, f"the page took {seconds:.2f} s"
    alert = await alert_of(db)
    body = card.payload["template_card"]
    assert body["card_type"] == "button_interaction"
    assert [b["key"] for b in body["button_list"]] == [f"alert:ack:{alert.id}",
                                                      f"alert:resolve:{alert.id}"]
    assert [b["text"] for b in body["button_list"]] == ["确认", "解决"]
    # The whole page (the patient's words included) came as text just before the card.
    texts = fake_wecom.sent_to(HERE, "text")
    assert "发烧38.6度" in texts[0].payload["text"]["content"]
    assert fake_wecom.sent_to(THERE) == []  # the other site is not paged

    # A coordinator of another site presses it (a forwarded card): refused, nothing changes.
    response = await stack.push(stack.pusher.press(card, f"alert:ack:{alert.id}",
                                                   userid=THERE))
    assert response.status == 200
    reply = await fake_wecom.wait_for(1, userid=THERE)
    assert f"#{alert.id}" in reply[0].payload["text"]["content"]
    assert (await alert_of(db)).status == "open"

    # The coordinator presses Acknowledge: acknowledged, by them, audited with them.
    press = stack.pusher.press(card, f"alert:ack:{alert.id}")
    response = await stack.push(press)
    assert response.status == 200
    assert await response.text() == ""
    acknowledged = await alert_of(db)
    assert acknowledged.status == "acknowledged"
    assert acknowledged.acknowledged_by == stack.coordinator
    assert await count(db, AuditEntry, AuditEntry.entity == "alerts",
                       AuditEntry.field == "status", AuditEntry.new_value == "acknowledged",
                       AuditEntry.actor_kind == "staff",
                       AuditEntry.actor_id == str(stack.coordinator)) == 1
    # The answer (with its Resolve button) comes back by WeCom as a card; the pressed card's
    # buttons become a grey "acknowledged".
    await fake_wecom.wait_for(2, userid=HERE, msgtype="template_card")
    await until(lambda: _true(bool(fake_wecom.updates)), 5, "the card update")
    assert fake_wecom.updates[0]["response_code"] == card.response_code
    assert fake_wecom.updates[0]["button"]["replace_name"] == f"#{alert.id} 已确认"

    # WeCom retrying (or anyone replaying) the same push: one row, one acknowledgement.
    rows = await count(db, InboundMessage, InboundMessage.channel == "wecom")
    for _ in range(3):
        assert (await stack.push(press)).status == 200
    await stack.callback.idle()
    assert await count(db, InboundMessage, InboundMessage.channel == "wecom") == rows
    assert await count(db, AlertEvent, AlertEvent.kind == "acknowledged") == 1


async def _true(value: bool) -> bool:
    return value


async def test_forged_pushes_are_refused_and_store_nothing(
        db: Database, stack: Stack, fake_wecom: FakeWeComAPI) -> None:
    good = stack.pusher.text(HERE, "/alerts")
    forged = [
        Push({**good.query, "msg_signature": "0" * 40}, good.body),  # a wrong signature
        Push({k: v for k, v in good.query.items() if k != "msg_signature"}, good.body),
        Push({**good.query, "nonce": "other"}, good.body),  # signed for another nonce
        CallbackPusher(aes_key="B" * 43).text(HERE, "/alerts"),  # another app's key
        CallbackPusher(token="another-token").text(HERE, "/alerts"),
        CallbackPusher(corp_id="ww-another-corp").text(HERE, "/alerts"),
        Push(good.query, "<xml><Encrypt>not base64</Encrypt></xml>"),
        Push(good.query, "not xml at all"),
    ]
    for push in forged:
        response = await stack.push(push)
        assert response.status == 403, push
    assert await count(db, InboundMessage) == 0
    # URL verification: the echostr decrypted for the right signature only.
    verify = stack.pusher.verify_url("echo-1234567890")
    response = await stack.client.get(PATH, params=verify.query)
    assert response.status == 200
    assert await response.text() == "echo-1234567890"
    response = await stack.client.get(PATH, params={**verify.query, "msg_signature": "x"})
    assert response.status == 403
    response = await stack.client.get(PATH, params={**verify.query, "timestamp": "1"})
    assert response.status == 403
    assert fake_wecom.sent == []


async def test_alerts_typed_in_wecom_come_back_by_wecom(
        db: Database, stack: Stack, fake_wecom: FakeWeComAPI) -> None:
    await fever_page(stack, fake_wecom)
    alert = await alert_of(db)
    before = len(fake_wecom.sent_to(HERE, "template_card"))
    response = await stack.push(stack.pusher.text(HERE, "/alerts"))
    assert response.status == 200
    # The list header as text, the alert as a card with its buttons.
    cards = (await fake_wecom.wait_for(before + 1, userid=HERE, msgtype="template_card")
             )[before:]
    assert [b["key"] for b in cards[-1].payload["template_card"]["button_list"]] == [
        f"alert:ack:{alert.id}", f"alert:resolve:{alert.id}"]
    # /ack typed works as on Telegram; the other site's /ack is "not found".
    await stack.push(stack.pusher.text(THERE, f"/ack {alert.id}"))
    await stack.callback.idle()
    assert (await alert_of(db)).status == "open"
    await stack.push(stack.pusher.text(HERE, f"/ack {alert.id}"))
    await stack.callback.idle()
    assert (await alert_of(db)).acknowledged_by == stack.coordinator
    async with db.read() as session:
        replies = (await session.execute(select(OutboundMessage.channel, OutboundMessage.address)
                                         .where(OutboundMessage.dedupe_key.like("reply:%"),
                                                OutboundMessage.staff_id.is_not(None)))).all()
    assert replies
    assert {r.channel for r in replies} == {"wecom"}
    assert {r.address for r in replies} == {HERE, THERE}


@pytest.mark.timeout(300)
async def test_an_expired_token_is_replaced_once_and_the_page_retried(
        db: Database, stack: Stack, fake_wecom: FakeWeComAPI) -> None:
    await stack.push(stack.pusher.text(HERE, "/help"))  # a first token
    await fake_wecom.wait_for(1, userid=HERE)
    fake_wecom.expire_token()
    _card, seconds = await fever_page(stack, fake_wecom)
    assert seconds < 2.0
    assert fake_wecom.token_calls() == 2
    assert [r.errcode for r in fake_wecom.requests].count(42001) == 1

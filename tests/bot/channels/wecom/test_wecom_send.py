"""The WeCom channel against the fake WeCom API: pages as template cards whose button keys are
the action strings, other texts as text, the digest's chart uploaded and sent after its text,
one shared access token replaced once when refused, errors mapped to the channel contract; and
the fake checked against wechatpy's own client."""

from __future__ import annotations

import asyncio

import pytest
from wechatpy.enterprise import WeChatClient

from bot.channels.wecom import WeComAPI, WeComChannel, card, fit_bytes
from engage.clock import SimulatedClock
from fakes.wecom import (
    AGENT_ID,
    CORP_ID,
    SECRET,
    FakeWeComAPI,
)
from messages.channel import Choice, OutgoingMessage, PermanentSendError, TransientSendError
from storage.db import Database

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
PAGE = ("URGENT (same day) alert #7, page 1\nSubject: S01-007\nReasons: fever\n"
        "Report: 发烧38.6度\nReceived: 2026-03-02 01:00 UTC (09:00 Asia/Shanghai)\n"
        "Please acknowledge; it escalates until someone does.")
BUTTONS = (Choice("Acknowledge", "alert:ack:7"), Choice("Resolve", "alert:resolve:7"))


def channel(db: Database, fake: FakeWeComAPI, clock: SimulatedClock) -> WeComChannel:
    return WeComChannel(WeComAPI(db, clock.now, corp_id=CORP_ID, agent_id=AGENT_ID,
                                 secret=SECRET, api_url=fake.base_url))


async def test_a_page_is_a_card_with_the_action_strings_as_button_keys(
        db: Database, fake_wecom: FakeWeComAPI, clock: SimulatedClock) -> None:
    wecom = channel(db, fake_wecom, clock)
    try:
        result = await wecom.send(OutgoingMessage(1, "zhangsan", PAGE, BUTTONS))
        # The page is longer than a card shows: the whole text first, then the card.
        text, sent = fake_wecom.sent_to("zhangsan")
        assert text.msgtype == "text"
        assert text.payload["text"]["content"] == PAGE
        assert sent.msgtype == "template_card"
        assert result.provider_id == sent.msgid
        body = sent.payload["template_card"]
        assert body["card_type"] == "button_interaction"
        assert body["main_title"]["title"] == "URGENT (same day) alert #7, page 1"
        assert [(b["text"], b["key"]) for b in body["button_list"]] == [
            ("Acknowledge", "alert:ack:7"), ("Resolve", "alert:resolve:7")]
        assert sent.payload["agentid"] == AGENT_ID
        # A short text with choices is one card; a second send of the same row is a new task.
        await wecom.send(OutgoingMessage(2, "zhangsan", "Alert #7 acknowledged.",
                                         (Choice("Resolve", "alert:resolve:7"),)))
        await wecom.send(OutgoingMessage(2, "zhangsan", "Alert #7 acknowledged.",
                                         (Choice("Resolve", "alert:resolve:7"),)))
        cards = fake_wecom.sent_to("zhangsan", "template_card")
        assert len(cards) == 3
        assert len(fake_wecom.sent_to("zhangsan", "text")) == 1
        assert fake_wecom.token_calls() == 1
    finally:
        await wecom.close()


async def test_a_digest_is_its_text_then_the_chart_uploaded_as_media(
        db: Database, fake_wecom: FakeWeComAPI, clock: SimulatedClock) -> None:
    wecom = channel(db, fake_wecom, clock)
    try:
        await wecom.send(OutgoingMessage(3, "lisi", "Daily digest BJ01", image=PNG))
        text, image = fake_wecom.sent_to("lisi")
        assert (text.msgtype, image.msgtype) == ("text", "image")
        assert fake_wecom.media[image.payload["image"]["media_id"]] == PNG
        # A text over 2,048 bytes is cut to fit (Chinese: 3 bytes a character).
        await wecom.send(OutgoingMessage(4, "lisi", "发烧" * 2000))
        long = fake_wecom.sent_to("lisi", "text")[-1].payload["text"]["content"]
        assert len(long.encode()) <= 2048
        assert long.endswith("…")
    finally:
        await wecom.close()


async def test_an_expired_token_is_replaced_once_for_both_workers_and_the_send_retried(
        db_url: str, fake_wecom: FakeWeComAPI, clock: SimulatedClock) -> None:
    workers = [Database(db_url), Database(db_url)]
    channels = [channel(w, fake_wecom, clock) for w in workers]
    try:
        await asyncio.gather(*(c.send(OutgoingMessage(n, "wangwu", f"hello {n}"))
                               for n, c in enumerate(channels)))
        assert fake_wecom.token_calls() == 1
        fake_wecom.expire_token()  # errcode 42001 on the next call, whoever makes it
        await asyncio.gather(*(c.send(OutgoingMessage(10 + n, "wangwu", f"again {n}"))
                               for n, c in enumerate(channels)))
        assert fake_wecom.token_calls() == 2  # one refresh, not one per worker
        assert [r.errcode for r in fake_wecom.requests if r.path.endswith("send")].count(
            42001) >= 1
        assert sorted(s.payload["text"]["content"] for s in fake_wecom.sent_to("wangwu")) == [
            "again 0", "again 1", "hello 0", "hello 1"]
        # A token refused a second time in a row is not fetched a third time in this send.
        fake_wecom.expire_token(times=2)
        with pytest.raises(TransientSendError):
            await channels[0].send(OutgoingMessage(20, "wangwu", "third"))
        assert fake_wecom.token_calls() == 3
    finally:
        for c in channels:
            await c.close()
        for w in workers:
            await w.dispose()


async def test_errors_map_to_the_channel_contract(
        db: Database, fake_wecom: FakeWeComAPI, clock: SimulatedClock) -> None:
    wecom = channel(db, fake_wecom, clock)
    fake_wecom.users = {"zhangsan"}
    bad_secret = WeComChannel(WeComAPI(db, clock.now, corp_id=CORP_ID, agent_id=AGENT_ID,
                                       secret="wrong", api_url=fake_wecom.base_url))
    try:
        with pytest.raises(TransientSendError) as token:  # no token: the message is kept
            await bad_secret.send(OutgoingMessage(4, "zhangsan", "hello"))
        assert "40001" in str(token.value)
        with pytest.raises(PermanentSendError) as gone:
            await wecom.send(OutgoingMessage(1, "left-the-company", "hello"))
        assert gone.value.unreachable
        assert gone.value.code == "81013"
        fake_wecom.fail_user["zhangsan"] = 45009  # call rate
        with pytest.raises(TransientSendError) as busy:
            await wecom.send(OutgoingMessage(2, "zhangsan", "hello"))
        assert busy.value.retry_after == 60.0
        fake_wecom.fail_user["zhangsan"] = 60020  # our server's IP is not trusted
        with pytest.raises(TransientSendError):
            await wecom.send(OutgoingMessage(3, "zhangsan", "hello"))
        del fake_wecom.fail_user["zhangsan"]
        # No answer in time after the request went: WeCom may have it.
        fake_wecom.send_delay = 1.0
        slow = WeComChannel(WeComAPI(db, clock.now, corp_id=CORP_ID, agent_id=AGENT_ID,
                                     secret=SECRET, api_url=fake_wecom.base_url, timeout=0.2))
        try:
            with pytest.raises(TransientSendError) as late:
                await slow.send(OutgoingMessage(6, "zhangsan", "hello"))
            assert late.value.maybe_sent
        finally:
            await slow.close()
        fake_wecom.send_delay = 0.0
        await fake_wecom.stop()
        # WeCom unreachable: nothing went, so the message is simply tried again later.
        fresh = channel(db, fake_wecom, clock)
        try:
            with pytest.raises(TransientSendError) as down:
                await fresh.send(OutgoingMessage(5, "zhangsan", "hello"))
            assert not down.value.maybe_sent
        finally:
            await fresh.close()
    finally:
        await wecom.close()
        await bad_secret.close()


def test_card_and_text_limits() -> None:
    body, fits = card("Alert #7 acknowledged.", BUTTONS, "t1")
    assert fits
    assert "sub_title_text" not in body
    body, fits = card("x" * 40 + "\nrest", BUTTONS, "t1")
    assert not fits
    assert len(body["main_title"]["title"]) == 36
    assert fit_bytes("short") == "short"
    assert len(fit_bytes("é" * 3000).encode()) <= 2048


async def test_the_fake_speaks_what_wechatpys_client_speaks(fake_wecom: FakeWeComAPI) -> None:
    """wechatpy's own (synchronous) client against the fake: the token, a text, a refusal."""
    client = WeChatClient(CORP_ID, SECRET, timeout=5, auto_retry=False)
    client.API_BASE_URL = fake_wecom.base_url + "/cgi-bin/"
    # The library's own token fetch and storage (its fetch_access_token names the real host).
    await asyncio.to_thread(client._fetch_access_token, url=fake_wecom.base_url +
                            "/cgi-bin/gettoken", params={"corpid": CORP_ID,
                                                         "corpsecret": SECRET})
    assert client.access_token == fake_wecom.tokens[0]
    sent = await asyncio.to_thread(client.message.send_text, AGENT_ID, "zhangsan", "你好")
    assert sent["errcode"] == 0
    assert fake_wecom.sent_to("zhangsan")[0].payload["text"] == {
        "content": "你好"}
    from wechatpy.exceptions import WeChatClientException

    with pytest.raises(WeChatClientException) as refused:
        await asyncio.to_thread(client.message.send_text, AGENT_ID + 1, "zhangsan", "x")
    assert refused.value.errcode == 40056

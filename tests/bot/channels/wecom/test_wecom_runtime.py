"""`engage run` wiring (in process): with the five ENGAGE_WECOM_ settings the WeCom channel is
registered, /wecom is mounted and answers WeCom's URL check, and a staff member's typed command
is answered by WeCom; without them there is no /wecom."""

from __future__ import annotations

import aiohttp

from engage.config import Settings
from engage.runtime import Runtime
from fakes.wecom import (
    AES_KEY,
    AGENT_ID,
    CORP_ID,
    SECRET,
    TOKEN,
    CallbackPusher,
    FakeWeComAPI,
)
from storage.models import Staff
from study import contacts
from tests.factories import ACTOR, add_site, add_staff


async def test_engage_run_mounts_wecom_and_answers_a_typed_command_by_wecom(
        db_url: str, fake_wecom: FakeWeComAPI) -> None:
    settings = Settings(_env_file=None, database_url=db_url, http_port=0,
                        wecom_corp_id=CORP_ID, wecom_agent_id=AGENT_ID, wecom_secret=SECRET,
                        wecom_token=TOKEN, wecom_aes_key=AES_KEY,
                        wecom_api_url=fake_wecom.base_url)
    runtime = Runtime(settings, restart_delay=0.05)
    await runtime.start()
    try:
        assert "wecom" in runtime.channels
        assert runtime.db is not None
        now = runtime.clock.now()
        await add_site(runtime.db, now, site="S01")
        staff_id = await add_staff(runtime.db, now, telegram_id=None, site="S01")
        async with runtime.db.write() as session:
            staff = await session.get(Staff, staff_id)
            assert staff is not None
            await contacts.bind(session, staff, channel="wecom", address="zhangsan", now=now,
                                actor=ACTOR, reason="test")
        pusher = CallbackPusher()
        url = f"http://127.0.0.1:{runtime.port}/wecom"
        async with aiohttp.ClientSession() as http:
            check = pusher.verify_url("3141592653")
            async with http.get(url, params=check.query) as response:
                assert response.status == 200
                assert await response.text() == "3141592653"
            push = pusher.text("zhangsan", "/help")
            async with http.post(url, params=push.query, data=push.body) as response:
                assert response.status == 200
        sent = await fake_wecom.wait_for(1, within=10, userid="zhangsan")
        assert "/alerts" in sent[0].payload["text"]["content"]
    finally:
        await runtime.stop()


async def test_without_wecom_settings_there_is_no_wecom_route(db_url: str) -> None:
    runtime = Runtime(Settings(_env_file=None, database_url=db_url,
                               http_port=0), restart_delay=0.05)
    await runtime.start()
    try:
        assert "wecom" not in runtime.channels
        async with aiohttp.ClientSession() as http, http.get(
                f"http://127.0.0.1:{runtime.port}/wecom") as response:
            assert response.status == 404
    finally:
        await runtime.stop()

"""A staff member on WeCom only gets the site's daily digest there: its text (the reviewed
button on a card) and the adherence chart uploaded as media and sent after its caption."""

from __future__ import annotations

from datetime import date, timedelta

from bot.channels.wecom import WeComAPI, WeComChannel
from engage.clock import SimulatedClock
from fakes.servers import outbox_sender
from fakes.wecom import AGENT_ID, CORP_ID, SECRET, FakeWeComAPI
from scheduler import digest as digest_step
from storage.audit import Actor
from storage.db import Database
from study import contacts
from tests.factories import T0, dose_row, patient_row, report_row, site_row, staff_row
from trial.protocol import Protocol

TODAY = date(2026, 3, 2)


async def test_a_wecom_only_coordinator_gets_the_digest_text_and_chart_by_wecom(
        db: Database, protocol: Protocol, fake_wecom: FakeWeComAPI) -> None:
    async with db.write() as session:
        await site_row(session, "BJ01")
        coordinator = await staff_row(session, "BJ01", "coordinator", language="zh",
                                      telegram=False)
        await contacts.bind(session, coordinator, channel="wecom", address="zhangsan", now=T0,
                            actor=Actor.cli("test"), reason="test")
        patient = await patient_row(session, "BJ01-001", "BJ01", telegram_id=601)
        for back in range(1, 15):
            await dose_row(session, patient, TODAY - timedelta(days=back),
                           ["taken", "missed"][back % 2])
        await report_row(session, patient, "乏力")
    assert await digest_step.plan_digests(db, protocol, T0) > 0
    wecom = WeComChannel(WeComAPI(db, SimulatedClock(T0).now, corp_id=CORP_ID,
                                  agent_id=AGENT_ID, secret=SECRET,
                                  api_url=fake_wecom.base_url))
    try:
        await outbox_sender(db, protocol, {"wecom": wecom}, SimulatedClock(T0)).run_once()
    finally:
        await wecom.close()
    sent = fake_wecom.sent_to("zhangsan")
    kinds = [s.msgtype for s in sent]
    assert kinds.count("image") == 1
    assert kinds[-1] == "image"
    assert kinds[-2] == "text"  # the chart's caption, then the chart
    assert "BJ01" in sent[-2].payload["text"]["content"]
    media = sent[-1].payload["image"]["media_id"]
    assert fake_wecom.media[media].startswith(b"\x89PNG")
    # The digest's "listed reports reviewed" button is on a card, its key the action string.
    cards = [s for s in sent if s.msgtype == "template_card"]
    assert [b["key"].split(":")[:2] for b in cards[0].payload["template_card"]["button_list"]
            ] == [["alert", "reviewed"]]

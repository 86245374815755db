"""A page WeCom refuses for good (81013: the userid left the corp or the app's visible range)
marks that staff member's WeCom contact point unreachable (audited) and tells the site's other
coordinators; later pages go by the member's other routes only."""

from __future__ import annotations

from sqlalchemy import select

from bot.channels.twilio import SmsChannel
from bot.channels.wecom import WeComAPI, WeComChannel
from engage.clock import SimulatedClock
from fakes.servers import outbox_sender
from fakes.wecom import AGENT_ID, CORP_ID, SECRET, FakeWeComAPI
from storage.db import Database
from storage.models import AuditEntry, ContactPoint, OutboundMessage, Patient, Staff
from study import contacts
from study.recipients import staff_route
from study.reports import receive_report
from tests.factories import ACTOR, add_site, add_staff, enrol
from trial.protocol import Protocol


async def test_a_userid_wecom_refuses_is_marked_unreachable_and_the_site_told(
        db: Database, protocol: Protocol, clock: SimulatedClock,
        fake_wecom: FakeWeComAPI, sms: SmsChannel) -> None:
    now = clock.now()
    await add_site(db, now, site="S01")
    gone = await add_staff(db, now, telegram_id=None, site="S01", phone="+8613800000001")
    colleague = await add_staff(db, now, telegram_id=None, site="S01")
    async with db.write() as session:
        for staff_id, userid in ((gone, "left-the-corp"), (colleague, "wangwu")):
            member = await session.get(Staff, staff_id)
            assert member is not None
            await contacts.bind(session, member, channel="wecom", address=userid, now=now,
                                actor=ACTOR, reason="test")
    enrolled = await enrol(db, protocol, now, subject="S01-007", site="S01", language="zh")
    fake_wecom.users = {"wangwu"}
    async with db.write() as session:
        patient = await session.get(Patient, enrolled.patient_id)
        assert patient is not None
        await receive_report(session, protocol, patient, "发烧38.6度", now=now, inbound_id=None)
    wecom = WeComChannel(WeComAPI(db, clock.now, corp_id=CORP_ID, agent_id=AGENT_ID,
                                  secret=SECRET, api_url=fake_wecom.base_url))
    try:
        await outbox_sender(db, protocol, {"wecom": wecom, "sms": sms}, clock).run_once()
    finally:
        await wecom.close()
    async with db.read() as session:
        point = (await session.execute(select(ContactPoint).where(
            ContactPoint.address == "left-the-corp"))).scalar_one()
        assert point.reachable is False
        audited = (await session.execute(select(AuditEntry).where(
            AuditEntry.entity == "contact_points", AuditEntry.field == "reachable"))
        ).scalars().one()
        assert "81013" in (audited.reason or "")
        member = await session.get(Staff, gone)
        assert member is not None
        assert [r.channel for r in staff_route(member)] == ["sms"]
        notices = (await session.execute(select(OutboundMessage).where(
            OutboundMessage.template_id == "delivery.staff_unreachable"))).scalars().all()
    assert [(n.staff_id, n.channel) for n in notices] == [(colleague, "wecom")]
    assert "by WeCom" in notices[0].body
    assert fake_wecom.sent_to("wangwu")  # the colleague was paged and told

"""Thanks and "not taken today" by SMS, through the signed Twilio webhook, the conversation core
and the dispatcher against the fake Twilio: no report for thanks; the missed-dose flow for a
dose not taken, paged as well when the same text says something urgent."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from bot.channels.twilio import SmsChannel
from bot.channels.twilio.inbound import TwilioInbound
from bot.conversation import Conversation
from bot.http import Server
from engage.clock import SimulatedClock
from fakes.servers import ACCOUNT, AUTH_TOKEN, outbox_sender
from fakes.twilio_api import FakeTwilioAPI
from fakes.webhooks import PUBLIC_URL, http_client, post_signed
from messages import catalogue
from scheduler.doses import plan_doses
from storage.db import Database
from storage.models import Alert, DoseRecord, InboundMessage, OutboundMessage, SymptomReport
from tests.factories import add_site, add_staff, enrol
from trial.protocol import Protocol

PHONE = "+8613800000001"
_sids = iter(range(10_000))



async def _text(db: Database, protocol: Protocol, clock: SimulatedClock, body: str) -> None:
    server = Server(db=db, routes=TwilioInbound(Conversation(db, protocol, clock), db, clock,
                                                PUBLIC_URL, AUTH_TOKEN).routes())
    params = {"MessageSid": f"SM{next(_sids):032d}", "AccountSid": ACCOUNT, "From": PHONE,
              "To": "+15005550006", "Body": body, "NumMedia": "0"}
    async with http_client(server) as client:
        assert (await post_signed(client, "/twilio/sms", params, AUTH_TOKEN)).status == 200


async def _world(db: Database, protocol: Protocol, clock: SimulatedClock) -> int:
    await add_site(db, clock.now())
    await add_staff(db, clock.now())
    return (await enrol(db, protocol, clock.now(), phone=PHONE)).patient_id


async def test_thanks_are_answered_politely_and_open_no_report(
        db: Database, protocol: Protocol, clock: SimulatedClock, fake_twilio: FakeTwilioAPI,
        sms: SmsChannel) -> None:
    await _world(db, protocol, clock)
    for body in ("好的 谢谢", "ok thanks", "👍"):
        await _text(db, protocol, clock, body)
    await _text(db, protocol, clock, "ok but I have chest pain")
    async with db.read() as s:
        outcomes = (await s.execute(select(InboundMessage.outcome)
                                    .order_by(InboundMessage.id))).scalars().all()
        reports = (await s.execute(select(SymptomReport))).scalars().all()
        replies = (await s.execute(select(OutboundMessage.template_id).where(
            OutboundMessage.dedupe_key.like("reply:%")).order_by(OutboundMessage.id))
        ).scalars().all()
    assert outcomes == ["acknowledgement"] * 3 + ["report"]
    assert [(r.raw_text, r.tier) for r in reports] == [("ok but I have chest pain", "emergency")]
    assert replies == ["chat.acknowledged"] * 3 + ["report.reply_emergency"]
    assert await outbox_sender(db, protocol, {"sms": sms}, clock).run_once() >= 4
    polite = catalogue.render("chat.acknowledged", "en")
    assert sum(polite in r.params["Body"] for r in fake_twilio.sent_to(PHONE)) == 3


async def test_didnt_take_it_today_marks_the_dose_missed_and_sends_the_rule(
        db: Database, protocol: Protocol, clock: SimulatedClock, fake_twilio: FakeTwilioAPI,
        sms: SmsChannel) -> None:
    patient_id = await _world(db, protocol, clock)
    await plan_doses(db, protocol, clock.now())
    clock.advance(timedelta(minutes=2))  # today's 08:00 dose is due
    await _text(db, protocol, clock, "didn't take it today")
    async with db.read() as s:
        (dose,) = (await s.execute(select(DoseRecord).where(
            DoseRecord.patient_id == patient_id, DoseRecord.due_at <= clock.now()))).scalars()
        (inbound,) = (await s.execute(select(InboundMessage))).scalars()
        assert (await s.execute(select(SymptomReport))).scalars().all() == []
    assert (dose.state, inbound.outcome) == ("missed", "dose_missed")
    assert await outbox_sender(db, protocol, {"sms": sms}, clock).run_once() >= 1
    rule = catalogue.render("dose.missed_rule", "en", latest="20:00",  # 08:00 + 12 h
                            capsules=protocol.dose.capsules)
    assert sum(rule in r.params["Body"] for r in fake_twilio.sent_to(PHONE)) == 1


async def test_not_taken_with_a_fever_is_paged_and_the_dose_recorded(
        sqlite_db: Database, protocol: Protocol, clock: SimulatedClock) -> None:
    db = sqlite_db
    patient_id = await _world(db, protocol, clock)
    await plan_doses(db, protocol, clock.now())
    clock.advance(timedelta(minutes=2))
    await _text(db, protocol, clock, "今天的药忘了吃，发烧了，38.6度")
    async with db.read() as s:
        states = (await s.execute(select(DoseRecord.state).where(
            DoseRecord.patient_id == patient_id, DoseRecord.due_at <= clock.now()))).scalars()
        (report,) = (await s.execute(select(SymptomReport))).scalars()
        (alert,) = (await s.execute(select(Alert))).scalars()
        replies = (await s.execute(select(OutboundMessage.template_id).where(
            OutboundMessage.dedupe_key.like("reply:%")).order_by(OutboundMessage.id))
        ).scalars().all()
    assert list(states) == ["missed"]
    assert (report.tier, report.temperature_c, alert.tier) == ("same_day", 38.6, "same_day")
    assert replies == ["report.reply_same_day", "dose.missed_rule"]

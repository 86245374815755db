"""Issue 14: an urgent text from an unregistered phone or an unknown Telegram chat gets the safety
reply (call 120 / contact your study team, in the language of the text) every time, and opens an
alert marked "unregistered sender" at the site whose number it was written to, or at every site;
the alert has no patient, keeps the sender (shown masked) and is paged, listed by /alerts, the
digest, `engage alert list` and the alerts export."""

from __future__ import annotations

import itertools
from datetime import datetime

from sqlalchemy import select

from bot import staff_alerts
from bot.conversation import Conversation, InboundEvent
from engage.clock import SimulatedClock
from messages import catalogue
from storage.audit import Actor
from storage.db import Database
from storage.models import Alert, InboundMessage, OutboundMessage, Staff
from study import digest, exports, listing
from study.senders import mask_sender
from tests.factories import add_site, add_staff
from trial.protocol import Localized, Protocol, SiteText

BJ01_PHONE, SH02_PHONE = "+861012345678", "+862198765432"
STRANGER = "+8613900000021"
_ids = itertools.count(1)


async def _sites(db: Database, now: datetime) -> tuple[int, int]:
    await add_site(db, now, site="BJ01", phone=BJ01_PHONE)
    await add_site(db, now, site="SH02", phone=SH02_PHONE)
    bj = await add_staff(db, now, telegram_id=9001, site="BJ01")
    sh = await add_staff(db, now, telegram_id=9002, site="SH02", language="zh")
    return bj, sh


def _sms(text: str, now: datetime, *, to: str = BJ01_PHONE,
         sender: str = STRANGER) -> InboundEvent:
    return InboundEvent("sms", f"SM{next(_ids):032d}", sender, text, None, now, {"to": to})


def _telegram(text: str, now: datetime, user: int = 555123456) -> InboundEvent:
    return InboundEvent("telegram", f"{next(_ids)}", str(user), text, None, now,
                        {"chat_id": user, "language_code": "en"})


async def _rows(db: Database) -> tuple[list[Alert], list[OutboundMessage]]:
    async with db.read() as s:
        alerts = list((await s.execute(select(Alert).order_by(Alert.id))).scalars())
        out = list((await s.execute(select(OutboundMessage).order_by(OutboundMessage.id)))
                   .scalars())
    return alerts, out


async def test_an_emergency_sms_from_an_unregistered_phone_pages_the_site_it_was_written_to(
        db: Database, protocol: Protocol, clock: SimulatedClock) -> None:
    bj, _ = await _sites(db, clock.now())
    conversation = Conversation(db, protocol, clock)
    handled = await conversation.handle(_sms("我爸突然胸口剧痛，喘不上气", clock.now()))
    assert handled.outcome == "unregistered_urgent"
    alerts, out = await _rows(db)
    (alert,) = alerts
    assert (alert.site_id, alert.patient_id, alert.kind, alert.tier, alert.sender) == (
        "BJ01", None, "unregistered", "emergency", STRANGER)
    assert {r["code"] for r in alert.reasons or []} & {"chest_pain", "breathing_trouble"}
    reply = next(m for m in out if m.address == STRANGER)
    assert (reply.template_id, reply.language, reply.lane) == (
        "report.unregistered_emergency", "zh", "safety")
    assert "120" in reply.body
    (page,) = [m for m in out if m.alert_id == alert.id]
    assert (page.staff_id, page.lane) == (bj, "safety")
    label = catalogue.render("alert.unregistered_sender", "en", sender="+86139****0021")
    assert label in page.body
    assert STRANGER not in page.body


async def test_a_number_no_site_has_pages_every_site_and_urgent_texts_are_always_answered(
        sqlite_db: Database, protocol: Protocol, clock: SimulatedClock) -> None:
    db = sqlite_db
    await _sites(db, clock.now())
    conversation = Conversation(db, protocol, clock)
    # A routine text first: the once-ever stranger reply, no alert.
    await conversation.handle(_sms("hello, who is this?", clock.now(), to="+15005550006"))
    await conversation.handle(_sms("my mother has a fever of 39.2 and shaking chills",
                                   clock.now(), to="+15005550006"))
    await conversation.handle(_sms("she fainted and is very confused now", clock.now(),
                                   to="+15005550006"))
    await conversation.handle(_sms("she fainted again and cannot speak", clock.now(),
                                   to="+15005550006"))
    alerts, out = await _rows(db)
    # Same-day at both sites, then emergency at both; the third text is answered, not paged.
    assert [(a.site_id, a.tier) for a in alerts] == [
        ("BJ01", "same_day"), ("SH02", "same_day"), ("BJ01", "emergency"),
        ("SH02", "emergency")]
    replies = [(m.template_id, m.language) for m in out if m.address == STRANGER]
    assert replies == [("common.unknown_sender", "zh"), ("report.unregistered_same_day", "en"),
                       ("report.unregistered_emergency", "en"),
                       ("report.unregistered_emergency", "en")]
    assert all("120" in m.body for m in out if m.template_id.startswith("report.unregistered"))
    async with db.read() as s:
        outcomes = (await s.execute(select(InboundMessage.outcome)
                                    .order_by(InboundMessage.id))).scalars().all()
    assert outcomes == ["unknown"] + ["unregistered_urgent"] * 3


async def test_an_unknown_telegram_chat_is_seen_by_staff_everywhere_masked(
        sqlite_db: Database, protocol: Protocol, clock: SimulatedClock) -> None:
    db = sqlite_db
    await _sites(db, clock.now())
    conversation = Conversation(db, protocol, clock)
    await conversation.handle(_telegram("right arm and leg suddenly weak, face drooping",
                                        clock.now()))
    alerts, out = await _rows(db)
    assert [(a.site_id, a.sender, a.tier) for a in alerts] == [
        ("BJ01", "telegram:555123456", "emergency"), ("SH02", "telegram:555123456", "emergency")]
    (reply,) = [m for m in out if m.address == "555123456"]
    assert (reply.channel, reply.template_id, reply.language) == (
        "telegram", "report.unregistered_emergency", "en")
    masked = mask_sender("telegram:555123456")
    assert masked == "Telegram ****3456"
    async with db.write() as s:
        member = (await s.execute(select(Staff).where(Staff.telegram_id == 9002))).scalar_one()
        listed = await staff_alerts.list_alerts(s, protocol, member, "", now=clock.now())
        item = listed[1]
        assert item.message_id == "alert.list_item"
        assert item.params["subject"] == catalogue.render("alert.unregistered_sender", "zh",
                                                          sender=masked)
        assert item.params["text"] == "right arm and leg suddenly weak, face drooping"
        site = await s.get(digest.Site, "SH02")
        assert site is not None
        _, lines = digest.render(await digest.gather(s, protocol, site, now=clock.now()), "zh")
        cli = await listing.alerts(s, now=clock.now(), actor=Actor.cli("test"))
        exported = [row async for row in exports.alert_rows(s)]
    row = next(line for line in lines if line.startswith(f"#{alerts[1].id} "))
    assert catalogue.render("alert.unregistered_sender", "zh", sender=masked) in row
    assert "face drooping" in row
    assert [(r["subject_id"], r["sender"], r["kind"]) for r in cli] == [
        (None, masked, "unregistered")] * 2
    sender_column = exports.ALERT_COLUMNS.index("sender")
    assert [r[sender_column] for r in exported] == [masked, masked]
    assert all("555123456" not in str(r) for r in exported)


async def test_a_number_the_protocol_gives_a_site_alerts_that_site_only(
        sqlite_db: Database, protocol: Protocol, clock: SimulatedClock) -> None:
    db = sqlite_db
    await _sites(db, clock.now())
    own = SiteText(sms_name=Localized(zh="随访中心", en="Clinic"), sms_numbers=["+15005550099"])
    conversation = Conversation(db, protocol.model_copy(update={"sites": {"SH02": own}}), clock)
    await conversation.handle(_sms("he collapsed and is not waking up", clock.now(),
                                   to="+1 500-555-0099"))
    alerts, _ = await _rows(db)
    assert [(a.site_id, a.tier) for a in alerts] == [("SH02", "emergency")]

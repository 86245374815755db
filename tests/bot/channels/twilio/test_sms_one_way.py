"""Acceptance 5 (issue 16): where a site's SMS route cannot receive replies (`sms.one_way_sites`),
no SMS to its patients invites a reply: a simulated month (reminders, follow-ups, visit notices,
the weekly check-in, replies to reports) and the week-24 notice, sent through the real Twilio
channel to the fake Twilio API, carry no choice line, no 回复 / "reply", and the site's phone and
120; patients of the other site get their choice lines as before."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from urllib.parse import parse_qs, urlparse
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from bot.channels.twilio import SmsChannel
from bot.conversation import Conversation, InboundEvent
from engage.clock import SimulatedClock
from fakes.servers import outbox_sender
from fakes.twilio_api import FakeTwilioAPI
from messages.channel import OutgoingMessage, SendResult
from messages.sms import check_sms, measure, one_way_text, sms_templates
from scheduler.tick import run_tick
from storage.audit import Actor
from storage.db import Database
from storage.models import OutboundMessage
from study import visits
from tests.factories import add_site, add_staff, enrol
from trial.protocol import Localized, Protocol, SiteText

SH = ZoneInfo("Asia/Shanghai")
BASELINE = date(2026, 3, 4)  # a Wednesday
START = datetime(2026, 2, 27, tzinfo=UTC)
SITE_PHONE = "010-69156114"
PHONES = {"A": "+8613800000011", "B": "+8613800000012", "C": "+8613800000013"}
SUBJECTS: dict[str, str] = {}
REPLY = re.compile(r"回复|reply", re.IGNORECASE)


def one_way(protocol: Protocol, site: str = "S02") -> Protocol:
    """The protocol with `site` on a one-way route, its phone given."""
    sites = {**protocol.sites, site: SiteText(sms_name=Localized(zh="协和随访", en="PUMCH"),
                                              phone=SITE_PHONE)}
    return protocol.model_copy(update={
        "sms": protocol.sms.model_copy(update={"one_way_sites": [site]}), "sites": sites})


class Accepting:
    """Staff pages by Telegram: accepted, not looked at here."""

    name = "telegram"

    async def send(self, message: OutgoingMessage) -> SendResult:
        return SendResult(provider_id=f"tg-{message.message_id}")


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(BASELINE + timedelta(days=day), time(hour, minute),
                            tzinfo=SH).astimezone(UTC)


def test_the_check_knows_one_way_sites(protocol: Protocol) -> None:
    assert check_sms(one_way(protocol)) == []
    # A one-way site without the phone its SMS must give is a problem of the protocol.
    bare = protocol.model_copy(update={
        "sms": protocol.sms.model_copy(update={"one_way_sites": ["S09"]})})
    assert [p.message_id for p in check_sms(bare)] == ["S09"]


@pytest.mark.timeout(600)  # a hang guard; the run takes a few seconds
async def test_no_sms_to_a_one_way_site_invites_a_reply(
        db: Database, protocol: Protocol, fake_twilio: FakeTwilioAPI, sms: SmsChannel) -> None:
    protocol = one_way(protocol)
    clock = SimulatedClock(START)
    for site in ("S01", "S02"):
        await add_site(db, START, site=site)
        await add_staff(db, START, site=site, telegram_id=9000 + int(site[1:]))
    for name, site, language in (("A", "S02", "zh"), ("B", "S02", "en"), ("C", "S01", "zh")):
        SUBJECTS[name] = f"{site}-{name}"
        await enrol(db, protocol, START, subject=f"{site}-{name}", phone=PHONES[name],
                    language=language, site=site, baseline=BASELINE)
    conversation = Conversation(db, protocol, clock)
    send = outbox_sender(db, protocol, {"sms": sms, "telegram": Accepting()}, clock)
    said = iter(range(1, 1000))
    # What the patients write (a one-way route may still let a text through, or it reached
    # the site's other number): a routine report, an emergency, help, a dose answer, thanks.
    texts = {(5, 12): {"A": "今天有点头痛", "B": "I have a mild headache", "C": "今天有点头痛"},
             (6, 12): {"A": "胸口很痛，喘不上气", "B": "crushing chest pain, cannot breathe",
                       "C": "胸口很痛，喘不上气"},
             (7, 12): {"A": "帮助", "B": "HELP", "C": "帮助"},
             (8, 12): {"A": "1", "B": "1", "C": "1"},
             (9, 12): {"A": "好的", "B": "ok", "C": "好的"}}
    moments = {at(day, hour) for day in range(-3, 31) for hour in (8, 9, 10, 12)}
    moments |= {at(day, 9) for day in (165, 168)} | {at(day, 8) for day in range(-3, 31)}
    moments.add(at(168, 15))  # staff record W24: the week-24 notice goes
    moments |= {at(day, 9, 5) for day in range(-3, 31)}  # the follow-up, an hour after 08:00
    for moment in sorted(moments):
        clock.set(moment)
        day = (moment.astimezone(SH).date() - BASELINE).days
        if moment == at(168, 15):
            for name in PHONES:
                async with db.write() as session:
                    patient = await visits.find_patient(session, SUBJECTS[name])
                    await visits.mark_done(session, protocol, patient, "W24", done_date=None,
                                           now=moment, actor=Actor.staff(1))
        for name, text in texts.get((day, moment.astimezone(SH).hour), {}).items():
            await conversation.handle(InboundEvent("sms", f"SM{next(said):032d}",
                                                   PHONES[name], text, None, moment, {}))
        await run_tick(db, protocol, moment)
        await send.run_once()

    async with db.read() as session:
        rows = {row.id: row for row in (await session.execute(select(OutboundMessage).where(
            OutboundMessage.channel == "sms"))).scalars()}
    bodies: dict[str, list[tuple[OutboundMessage, str]]] = {name: [] for name in PHONES}
    for request in fake_twilio.sent_to():
        query = parse_qs(urlparse(request.params["StatusCallback"]).query)
        row = rows[int(query["message_id"][0])]
        name = next(n for n, phone in PHONES.items() if phone == request.params["To"])
        bodies[name].append((row, request.params["Body"]))

    # Everything the month holds went out to each patient by SMS.
    kinds = {"dose.reminder", "dose.follow_up", "visit.notice_in_days", "visit.notice_tomorrow",
             "questionnaire.checkin_offer", "report.reply_routine", "report.reply_emergency",
             "chat.help", "dose.taken_ack", "chat.acknowledged", "phase.changed"}
    for name in PHONES:
        sent = {row.template_id for row, _ in bodies[name]}
        assert kinds <= sent, (name, kinds - sent)
    templates, _ = sms_templates()
    budgets = {(t.message_id, t.language): max(t.budget or 1, t.one_way_budget or 1)
               for t in templates}
    for name in ("A", "B"):
        for row, body in bodies[name]:
            assert not REPLY.search(body), (row.template_id, body)
            assert SITE_PHONE in body, (row.template_id, body)
            assert "120" in body, (row.template_id, body)
            assert not re.search(r"[123] (已服|未服|稍后提醒|Taken|Not taken|Snooze)", body), (
                row.template_id, body)  # no choice line
            # Within the catalogue's budget (one segment unless it says more), visit notices
            # (measured whole here) included: one in Chinese, two in English (visit.po says so).
            limit = budgets.get((row.template_id, row.language), 1)
            if row.template_id.startswith("visit.") and row.language == "en":
                limit = 2
            assert measure(body).segments <= limit, (row.template_id, body)
    a_reminder = next(body for row, body in bodies["A"] if row.template_id == "dose.reminder")
    assert a_reminder == (f"该服用研究用药了：3粒，整粒吞服。有事请致电{SITE_PHONE}，"
                          "紧急请拨120【协和随访】")
    b_follow = next(body for row, body in bodies["B"] if row.template_id == "dose.follow_up")
    assert b_follow.startswith("Not taken today's study medication yet? Take it now")
    # The other site's patient: unchanged, choice line and all, and no one-way line.
    c_reminders = [body for row, body in bodies["C"] if row.template_id == "dose.reminder"]
    assert c_reminders
    assert all("回复：1 已服" in body for body in c_reminders)
    assert not [body for _, body in bodies["C"] if SITE_PHONE in body]


@pytest.mark.parametrize(("language", "text", "said"), [
    # A message with a one-way wording is said that way, its values kept (a repeated one too).
    ("zh", "如果现在还不到20:30，请现在补吃3粒，吃完回复1；过了20:30就不要补了，明天按平时时间吃。"
           "千万不要一次吃双倍。",
     "如果现在还不到20:30，请现在补吃3粒；过了20:30就不要补了，明天按平时时间吃。千万不要一次吃双倍。"),
    ("en", "Time for your study medication: 3 capsules, swallowed whole. Feeling unwell? Write "
           "to us in your own words.",
     "Time for your study medication: 3 capsules, swallowed whole."),
    # Any other sentence asking for a reply is left out; the rest is kept.
    ("zh", "消息已恢复。回复“退订”可暂停。", "消息已恢复。"),
    ("en", "Welcome. To connect, send the code, e.g. ABCD2345. It is valid for 3 days.",
     "Welcome. It is valid for 3 days."),
    ("en", "Your temperature of 38.5 is recorded. Reply 1 if you are worse.",
     "Your temperature of 38.5 is recorded."),
])
def test_one_way_text(language: str, text: str, said: str) -> None:
    assert one_way_text(text, language) == said

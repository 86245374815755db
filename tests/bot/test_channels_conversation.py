"""The channel-neutral conversation core, driven directly with inbound events."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from bot.channels.twilio.inbound import sms_event
from bot.conversation import Conversation, InboundEvent
from engage.clock import SimulatedClock
from scheduler.doses import plan_doses
from storage.db import Database
from storage.models import Alert, DoseRecord, InboundMessage, OutboundMessage, Patient
from tests.factories import add_site, add_staff, enrol
from trial.protocol import Protocol

PHONE = "+8613800000001"


class Wakes:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


@pytest.fixture
def wakes() -> Wakes:
    return Wakes()


@pytest.fixture
def core(db: Database, protocol: Protocol, clock: SimulatedClock, wakes: Wakes) -> Conversation:
    return Conversation(db, protocol, clock, wake=wakes)


_ids = iter(range(1, 10_000))


def sms(text: str, clock: SimulatedClock, *, sender: str = PHONE, sid: str | None = None,
        opt_out_type: str = "") -> InboundEvent:
    """An SMS as the Twilio adapter hands it over (with what Twilio made of it)."""
    return sms_event({"MessageSid": sid or f"SM{next(_ids):032d}", "From": sender, "Body": text,
                      "OptOutType": opt_out_type}, clock.now())


def tg(text: str, clock: SimulatedClock, *, user: int = 555, action: str | None = None,
       update_id: int | None = None) -> InboundEvent:
    return InboundEvent("telegram", str(update_id or next(_ids)), str(user), text, action,
                        clock.now(), {"chat_id": user})


async def outbox(db: Database) -> list[OutboundMessage]:
    async with db.read() as session:
        return list((await session.execute(
            select(OutboundMessage).order_by(OutboundMessage.id))).scalars())


async def patient(db: Database, patient_id: int) -> Patient:
    async with db.read() as session:
        row = await session.get(Patient, patient_id)
        assert row is not None
        return row


async def test_a_replay_sent_ten_times_at_once_is_stored_and_answered_once(
        db: Database, protocol: Protocol, clock: SimulatedClock, core: Conversation) -> None:
    await add_site(db, clock.now())
    await enrol(db, protocol, clock.now(), phone=PHONE)
    event = sms("HELP", clock, sid="SM" + "7" * 32)
    results = await asyncio.gather(*(core.handle(event) for _ in range(10)))
    assert sum(not r.duplicate for r in results) == 1
    async with db.read() as session:
        inbound = (await session.execute(select(func.count()).select_from(InboundMessage))
                   ).scalar_one()
    assert inbound == 1
    rows = await outbox(db)
    assert [r.template_id for r in rows] == ["chat.help"]
    assert "+861012345678" in rows[0].body


async def test_an_unknown_number_gets_one_neutral_sms_ever(
        db: Database, clock: SimulatedClock, core: Conversation) -> None:
    await add_site(db, clock.now())
    for text in ("hello", "who is this", "STOP", "1"):
        handled = await core.handle(sms(text, clock, sender="+447700900123"))
        assert handled.outcome == "unknown"
    rows = await outbox(db)
    assert len(rows) == 1
    assert rows[0].template_id == "common.unknown_sender"
    assert rows[0].language == "en"
    assert rows[0].patient_id is None


async def test_an_unknown_telegram_chat_is_told_how_to_link_and_nothing_else(
        db: Database, clock: SimulatedClock, core: Conversation) -> None:
    await core.handle(tg("hi", clock, user=42))
    await core.handle(tg("/start", clock, user=42))
    rows = await outbox(db)
    assert [r.template_id for r in rows] == ["chat.link_needed"]  # once a day, however many
    assert all(r.address == "42" for r in rows)


async def test_start_code_links_and_answers_in_the_patients_language(
        db: Database, protocol: Protocol, clock: SimulatedClock, core: Conversation) -> None:
    await add_site(db, clock.now())
    enrolled = await enrol(db, protocol, clock.now(), language="zh")
    handled = await core.handle(tg("/start WRONG123", clock, user=555))
    assert handled.outcome == "link_refused"
    handled = await core.handle(tg(f"/start {enrolled.code}", clock, user=555))
    assert handled.outcome == "link_linked"
    assert (await patient(db, enrolled.patient_id)).telegram_id == 555
    rows = await outbox(db)
    assert [r.template_id for r in rows] == ["chat.link_failed", "chat.link_ok"]
    assert rows[1].language == "zh"
    assert "绑定成功" in rows[1].body


async def test_stop_pauses_alerts_the_coordinator_and_start_resumes(
        db: Database, protocol: Protocol, clock: SimulatedClock, core: Conversation) -> None:
    await add_site(db, clock.now())
    staff_id = await add_staff(db, clock.now(), telegram_id=9001)
    enrolled = await enrol(db, protocol, clock.now(), phone=PHONE, language="zh")
    await core.handle(sms("退订", clock))
    assert (await patient(db, enrolled.patient_id)).opted_out is True
    assert (await patient(db, enrolled.patient_id)).status == "active"  # not a withdrawal
    async with db.read() as session:
        alert = (await session.execute(select(Alert))).scalar_one()
    assert (alert.kind, alert.tier, alert.patient_id) == ("opt_out", "routine",
                                                           enrolled.patient_id)
    rows = await outbox(db)
    notice = next(r for r in rows if r.staff_id == staff_id)
    assert notice.channel == "telegram"
    assert notice.address == "9001"
    assert "S001" in notice.body
    # The confirmation answers the STOP itself, so the opt-out it reports does not hold it back.
    reply = next(r for r in rows if r.address == PHONE)
    assert reply.template_id == "chat.stopped"
    assert reply.language == "zh"
    # A second STOP changes nothing and raises no second alert.
    await core.handle(sms("TD", clock))
    async with db.read() as session:
        assert (await session.execute(select(func.count()).select_from(Alert))).scalar_one() == 1
    await core.handle(sms("START", clock))
    assert (await patient(db, enrolled.patient_id)).opted_out is False


async def test_twilio_stop_words_and_opt_out_type_pause_without_our_reply(
        db: Database, protocol: Protocol, clock: SimulatedClock, core: Conversation) -> None:
    await add_site(db, clock.now())
    enrolled = await enrol(db, protocol, clock.now(), phone=PHONE)
    await core.handle(sms("Stop", clock))
    assert (await patient(db, enrolled.patient_id)).opted_out is True
    assert not [r for r in await outbox(db) if r.patient_id == enrolled.patient_id]
    await core.handle(sms("unstop", clock, opt_out_type="START"))
    assert (await patient(db, enrolled.patient_id)).opted_out is False
    await core.handle(sms("please stop now", clock, opt_out_type="STOP"))
    assert (await patient(db, enrolled.patient_id)).opted_out is True


async def test_help_gives_the_sites_phone(db: Database, protocol: Protocol,
                                          clock: SimulatedClock, core: Conversation) -> None:
    await add_site(db, clock.now(), phone="+861087654321")
    await enrol(db, protocol, clock.now(), phone=PHONE, language="zh")
    await core.handle(sms("帮助", clock))
    (row,) = await outbox(db)
    assert row.template_id == "chat.help"
    assert "+861087654321" in row.body
    assert row.channel == "sms"
    assert row.address == PHONE


async def test_language_is_asked_and_switched(db: Database, protocol: Protocol,
                                              clock: SimulatedClock, core: Conversation) -> None:
    await add_site(db, clock.now())
    enrolled = await enrol(db, protocol, clock.now(), language="zh")
    await core.handle(tg(f"/start {enrolled.code}", clock))
    await core.handle(tg("/language", clock))
    ask = (await outbox(db))[-1]
    assert ask.template_id == "chat.language_ask"
    assert [c["action"] for c in ask.choices] == ["lang:zh", "lang:en"]
    assert [c["label"] for c in ask.choices] == ["中文", "英文"]
    await core.handle(tg("", clock, action="lang:en"))
    assert (await patient(db, enrolled.patient_id)).language == "en"
    assert (await outbox(db))[-1].body == "I will write to you in English."
    await core.handle(sms("LANG 中文", clock, sender="+8613900000009"))  # unknown: no effect
    await core.handle(tg("语言 中文", clock))
    assert (await patient(db, enrolled.patient_id)).language == "zh"
    await core.handle(tg("English", clock))  # the button's label, typed
    assert (await patient(db, enrolled.patient_id)).language == "en"
    await core.handle(tg("中文", clock))
    assert (await patient(db, enrolled.patient_id)).language == "zh"


async def test_a_lone_t_does_not_opt_out(db: Database, protocol: Protocol,
                                         clock: SimulatedClock, core: Conversation) -> None:
    await add_site(db, clock.now())
    enrolled = await enrol(db, protocol, clock.now(), phone=PHONE)
    await core.handle(sms("T", clock))
    assert not (await patient(db, enrolled.patient_id)).opted_out
    await core.handle(sms("STOP", clock))
    assert (await patient(db, enrolled.patient_id)).opted_out


async def test_taken_by_sms_and_by_button_records_the_dose(
        db: Database, protocol: Protocol, clock: SimulatedClock, core: Conversation) -> None:
    await add_site(db, clock.now())
    enrolled = await enrol(db, protocol, clock.now(), phone=PHONE)
    await plan_doses(db, protocol, clock.now())
    clock.advance(timedelta(minutes=5))
    handled = await core.handle(sms("taken", clock))
    assert handled.outcome == "dose_taken"
    async with db.read() as session:
        dose = (await session.execute(select(DoseRecord).where(
            DoseRecord.patient_id == enrolled.patient_id))).scalars().first()
    assert dose is not None
    assert dose.state == "taken"
    assert (await outbox(db))[-1].template_id.startswith("dose.")


async def test_staff_commands_and_a_patient_sending_one(
        db: Database, protocol: Protocol, clock: SimulatedClock, core: Conversation) -> None:
    await add_site(db, clock.now())
    await add_staff(db, clock.now(), telegram_id=9001)
    enrolled = await enrol(db, protocol, clock.now())
    await core.handle(tg("/help", clock, user=9001))
    staff_help = (await outbox(db))[-1]
    assert staff_help.template_id == "chat.staff_help"
    assert "/help" in staff_help.body
    await core.handle(tg("/nonsense", clock, user=9001))
    assert (await outbox(db))[-1].template_id == "chat.staff_unknown_command"
    await core.handle(tg(f"/start {enrolled.code}", clock, user=556))
    await core.handle(tg("/alerts", clock, user=556))
    assert (await outbox(db))[-1].template_id == "chat.help"  # patient help, no staff data


async def test_a_stored_but_unhandled_message_is_handled_later(
        db: Database, protocol: Protocol, clock: SimulatedClock, core: Conversation) -> None:
    await add_site(db, clock.now())
    await enrol(db, protocol, clock.now(), phone=PHONE)
    async with db.write() as session:
        session.add(InboundMessage(channel="sms", external_id="SMcrashed", sender=PHONE,
                                   text="HELP", payload={"action": None},
                                   received_at=clock.now()))
    clock.advance(timedelta(minutes=2))
    assert await core.handle_pending() == 1
    assert [r.template_id for r in await outbox(db)] == ["chat.help"]
    assert await core.handle_pending() == 0


async def test_an_urgent_report_is_queued_in_the_safety_lane_and_wakes_the_dispatcher(
        db: Database, protocol: Protocol, clock: SimulatedClock, core: Conversation,
        wakes: Wakes) -> None:
    await add_site(db, clock.now())
    await add_staff(db, clock.now(), telegram_id=9001)
    await enrol(db, protocol, clock.now(), phone=PHONE)
    handled = await core.handle(sms("I have chest pain and trouble breathing", clock))
    assert handled.outcome == "report"
    assert wakes.count == 1
    assert any(r.lane == "safety" for r in await outbox(db))
    await core.handle(sms("I feel a bit tired today", clock))
    assert wakes.count == 1  # routine: the next dispatch pass is soon enough


async def test_switching_language_mid_questionnaire_continues_it_in_the_new_language(
        db: Database, protocol: Protocol, clock: SimulatedClock, core: Conversation) -> None:
    await add_site(db, clock.now())
    enrolled = await enrol(db, protocol, clock.now(), language="zh")
    await core.handle(tg(f"/start {enrolled.code}", clock))
    await core.handle(tg("/report", clock))
    first = (await outbox(db))[-1]
    assert first.template_id.startswith("questionnaire.")
    assert first.language == "zh"
    await core.handle(tg("/language", clock))
    await core.handle(tg("", clock, action="lang:en"))
    assert (await patient(db, enrolled.patient_id)).language == "en"
    before = len(await outbox(db))
    await core.handle(tg("0", clock))  # "never" for the first symptom: on to the next item
    after = (await outbox(db))[before:]
    questions = [m for m in after if m.template_id.startswith("questionnaire.")]
    assert questions, [m.template_id for m in after]
    assert all(m.language == "en" for m in questions)
    assert not any("\u4e00" <= ch <= "\u9fff" for m in questions for ch in m.body)

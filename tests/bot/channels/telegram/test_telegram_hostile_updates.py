"""What real people and forgers send on Telegram, through the real aiogram client and the fake
Bot API: forged out-of-range button ids, NUL and lone surrogates, an update that fails for good,
edits, group chats, blocking and unblocking the bot, and a flood of strangers."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from aiogram import Bot
from sqlalchemy import select

from bot.channels.telegram import TelegramChannel
from bot.conversation import Conversation, InboundEvent
from engage.clock import SimulatedClock
from fakes.polling import Polling
from fakes.servers import outbox_sender
from fakes.telegram_api import FakeTelegramAPI
from messages import catalogue
from storage import outbox
from storage.db import Database
from storage.models import InboundMessage, OutboundMessage, Patient, SymptomReport
from tests.factories import add_site, add_staff, enrol, read_patient
from trial.protocol import Protocol

PATIENT = 901
COORDINATOR = 9001
ADMIN = 9002


@dataclass
class Trial:
    """A site with a coordinator and an admin, a patient linked on Telegram, the poller and
    the dispatcher running."""

    db: Database
    core: Conversation
    polling: Polling
    patient_id: int
    stop: asyncio.Event
    sending: asyncio.Task[None]

    async def patient(self) -> Patient:
        return await read_patient(self.db, self.patient_id)

    async def close(self) -> None:
        await self.polling.close()
        self.stop.set()
        await asyncio.wait_for(self.sending, 5)


@pytest.fixture
async def trial(db: Database, protocol: Protocol, clock: SimulatedClock, bot: Bot,
                fake_telegram: FakeTelegramAPI) -> AsyncIterator[Trial]:
    await add_site(db, clock.now())
    await add_staff(db, clock.now(), telegram_id=COORDINATOR)
    await add_staff(db, clock.now(), telegram_id=ADMIN, role="admin", site=None)  # type: ignore[arg-type]
    enrolled = await enrol(db, protocol, clock.now(), phone="+8613800000009")
    sender = outbox_sender(db, protocol, {"telegram": TelegramChannel(bot)}, clock)
    core = Conversation(db, protocol, clock, wake=sender.wake)
    await core.handle(InboundEvent("telegram", "link", str(PATIENT), f"/start {enrolled.code}",
                                   None, clock.now(), {"chat_id": PATIENT}))
    stop = asyncio.Event()
    running = Trial(db, core, Polling(bot, core, clock, fake_telegram), enrolled.patient_id,
                    stop, asyncio.create_task(sender.run(stop)))
    yield running
    await running.close()


async def rows(db: Database) -> dict[str, InboundMessage]:
    async with db.read() as session:
        return {r.external_id: r for r in (await session.execute(select(InboundMessage)))
                .scalars()}


async def test_forged_ids_nul_and_an_update_failing_for_good_do_not_freeze_input(
        trial: Trial, fake_telegram: FakeTelegramAPI) -> None:
    forged = fake_telegram.inject(fake_telegram.callback_update(PATIENT, "dose:taken:3000000000"))
    nul = fake_telegram.inject(fake_telegram.message_update(PATIENT, "fever\x00 39.2 \ud800"))
    # A user id no database column holds (PostgreSQL bigint, SQLite integer): fails every try.
    poison = fake_telegram.inject(fake_telegram.message_update(2**64 + 5, "hello"))
    behind = fake_telegram.inject(fake_telegram.message_update(PATIENT, "TAKEN"))
    await trial.polling.handled(behind, within=10)
    stored = await rows(trial.db)
    assert stored[str(forged)].outcome == "unknown_action"  # answered with help, not an error
    assert stored[str(nul)].text == "fever 39.2 \ufffd"
    assert stored[str(nul)].outcome == "report"
    assert stored[str(poison)].outcome == "failed"
    assert stored[str(behind)].outcome is not None
    assert stored[str(behind)].outcome.startswith("dose_")
    assert fake_telegram.sent("answerCallbackQuery")
    told = await fake_telegram.texts_to(ADMIN)
    assert catalogue.render("delivery.inbound_failed", "en", channel="Telegram", tries=3,
                            inbound=stored[str(poison)].id) in told


async def test_an_edit_is_triaged_again_and_pages_the_coordinator(
        trial: Trial, fake_telegram: FakeTelegramAPI) -> None:
    first = fake_telegram.message_update(PATIENT, "ok", message_id=50)
    update = fake_telegram.inject(first)
    await trial.polling.handled(update)
    assert not fake_telegram.sent("sendMessage", COORDINATOR)
    edit = fake_telegram.inject(fake_telegram.edited_update(PATIENT, 50,
                                                            "fever 39.2 and chills"))
    await trial.polling.handled(edit)
    page = await fake_telegram.texts_to(COORDINATOR)
    assert any("fever 39.2 and chills" in text for text in page)
    # The page says the patient edited the message (the first words were "ok").
    edited = catalogue.render("alert.edited_note", "en")
    assert any(f"{edited} fever 39.2 and chills" in text for text in page)
    stored = [r for r in (await rows(trial.db)).values() if r.external_id.startswith("edit:")]
    assert len(stored) == 1
    assert stored[0].payload["edited"] is True
    assert stored[0].outcome == "report"
    async with trial.db.read() as session:
        assert (await session.execute(select(SymptomReport.raw_text))).scalars().all() == [
            "fever 39.2 and chills"]


async def test_a_group_gets_one_reply_a_day_and_nothing_there_is_a_report(
        trial: Trial, fake_telegram: FakeTelegramAPI) -> None:
    for text in ("fever 39.5", "chest pain", "hello?"):
        update = fake_telegram.inject(fake_telegram.group_update(-100123, PATIENT, text))
    await trial.polling.handled(update)
    (reply,) = await fake_telegram.texts_to(-100123)
    assert reply == catalogue.render("chat.group_private", "zh")
    await asyncio.sleep(0.3)
    assert len(fake_telegram.sent("sendMessage", -100123)) == 1
    assert {r.outcome for r in (await rows(trial.db)).values() if r.external_id != "link"} == {
        "group"}
    async with trial.db.read() as session:
        assert not (await session.execute(select(SymptomReport))).scalars().all()
    assert not fake_telegram.sent("sendMessage", COORDINATOR)


async def test_a_block_tells_the_coordinator_and_after_an_unblock_the_reminder_arrives(
        trial: Trial, fake_telegram: FakeTelegramAPI, clock: SimulatedClock) -> None:
    update = fake_telegram.inject(fake_telegram.member_update(PATIENT, "kicked"))
    await trial.polling.handled(update)
    (told,) = await fake_telegram.texts_to(COORDINATOR)
    patient = await trial.patient()
    assert told == catalogue.render("delivery.telegram_blocked", "en",
                                    subject=patient.subject_id)
    assert patient.telegram_reachable is False
    update = fake_telegram.inject(fake_telegram.member_update(PATIENT, "member"))
    await trial.polling.handled(update)
    async with trial.db.write() as session:
        patient = await session.get(Patient, trial.patient_id)
        assert patient is not None
        assert patient.telegram_reachable is True
        await outbox.enqueue(session, key="dose:reminder:test", channel="telegram",
                             address=str(PATIENT), template_id="dose.reminder",
                             template_version="t", language="en", body="Time for your dose",
                             due_at=clock.now(), now=clock.now(), patient_id=patient.id,
                             lane=outbox.SAFETY)
    assert "Time for your dose" in await fake_telegram.texts_to(PATIENT, count=2)


async def test_a_patient_who_writes_again_is_reachable_again(
        trial: Trial, fake_telegram: FakeTelegramAPI) -> None:
    update = fake_telegram.inject(fake_telegram.member_update(PATIENT, "kicked"))
    await trial.polling.handled(update)
    update = fake_telegram.inject(fake_telegram.message_update(PATIENT, "TAKEN"))
    await trial.polling.handled(update)
    assert (await trial.patient()).telegram_reachable is True


async def test_300_strangers_do_not_delay_a_fever_page(
        trial: Trial, fake_telegram: FakeTelegramAPI) -> None:
    if not trial.db.is_sqlite:
        pytest.skip("a behaviour bound measured once, on the embedded database")
    loop = asyncio.get_running_loop()
    for n in range(300):
        fake_telegram.inject(fake_telegram.message_update(500_000 + n, f"hello {n}"))
    injected = loop.time()
    fever = fake_telegram.inject(fake_telegram.message_update(PATIENT, "fever 39.2 and chills"))
    await fake_telegram.texts_to(COORDINATOR, within=10)
    page = fake_telegram.sent("sendMessage", COORDINATOR)[0].at
    served = fake_telegram.served[fever]
    logging.getLogger(__name__).info(
        "fever page %.2f s after its update was served, %.2f s after it was injected behind "
        "300 strangers", page - served, page - injected)
    assert page - served < 2.0
    assert page - injected < 2.0
    await trial.polling.poller.idle()
    async with trial.db.read() as session:
        replies = (await session.execute(select(OutboundMessage).where(
            OutboundMessage.template_id == "chat.link_needed"))).scalars().all()
    assert len(replies) == 300  # one each; a second message the same day gets none

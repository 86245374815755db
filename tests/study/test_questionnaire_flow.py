"""The questionnaire: buttons and typed answers, skipping, restart-proof state, timeout,
abandoning, language switches, and the weekly check-in offer."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from engage.clock import SimulatedClock
from scheduler import escalation
from storage.db import Database
from storage.models import Alert, OutboundMessage, Patient, SymptomReport
from study import questionnaire as q
from tests.bot.test_alerts_flow import make_world, pages
from trial.protocol import Protocol


async def _answer(db: Database, protocol: Protocol, patient_id: int, text: str,
                  clock: SimulatedClock) -> list[str]:
    async with db.write() as s:
        patient = await s.get(Patient, patient_id)
        assert patient is not None
        replies = await q.answer(s, protocol, patient, text, now=clock.now(), inbound_id=None)
    return [r.message_id for r in replies]


async def _start(db: Database, protocol: Protocol, patient_id: int,
                 clock: SimulatedClock) -> list[str]:
    async with db.write() as s:
        patient = await s.get(Patient, patient_id)
        assert patient is not None
        return [r.message_id for r in await q.start(s, protocol, patient, now=clock.now())]


async def test_full_questionnaire_with_skips_becomes_a_triaged_report(
        db: Database, db_url: str, protocol: Protocol, clock: SimulatedClock) -> None:
    world = await make_world(db, protocol, clock.now())
    pid = world.patient_id
    assert await _start(db, protocol, pid, clock) == [
        "questionnaire.intro", "questionnaire.q_mouth_throat_sores_severity"]
    assert await _answer(db, protocol, pid, "q:0:0", clock) == [
        "questionnaire.q_diarrhoea_frequency"]
    assert await _answer(db, protocol, pid, "q:0:1", clock) == [  # a stale button
        "questionnaire.stale", "questionnaire.q_diarrhoea_frequency"]
    assert await _answer(db, protocol, pid, "从不", clock) == ["questionnaire.q_cough_severity"]
    # A restart: a new Database object carries on at the same question.
    restarted = Database(db_url)
    try:
        # Typed numbers are the printed ones: 4 is the fourth option, "severe" (issue 16).
        assert await _answer(restarted, protocol, pid, "4", clock) == [
            "questionnaire.q_cough_interference"]
    finally:
        await restarted.dispose()
    assert await _answer(db, protocol, pid, "banana", clock) == [
        "questionnaire.invalid", "questionnaire.q_cough_interference"]
    for text in ("a little bit", "1", "1", "none", "1"):
        await _answer(db, protocol, pid, text, clock)
    assert await _answer(db, protocol, pid, "1", clock) == ["questionnaire.q_temperature"]
    assert await _answer(db, protocol, pid, "37.1", clock) == ["report.reply_same_day"]
    async with db.read() as s:
        report = (await s.execute(select(SymptomReport))).scalar_one()
        alert = (await s.execute(select(Alert))).scalar_one()
    assert (report.source, report.tier, report.temperature_c) == (
        "questionnaire", "same_day", 37.1)
    assert report.parsed["answers"]["cough"] == {"severity": 3, "interference": 1}
    assert report.parsed["answers"]["mouth_throat_sores"] == {"severity": 0}
    assert alert.report_id == report.id
    async with db.read() as s:
        patient = await s.get(Patient, pid)
        assert patient is not None
        assert not await q.is_active(s, patient, clock.now())


async def _answer_all(db: Database, protocol: Protocol, patient_id: int, answers: list[str],
                      clock: SimulatedClock) -> list[str]:
    await _start(db, protocol, patient_id, clock)
    replies: list[str] = []
    for text in answers:
        replies = await _answer(db, protocol, patient_id, text, clock)
    return replies


async def test_all_never_questionnaire_opens_no_alert(db: Database, protocol: Protocol,
                                                      clock: SimulatedClock) -> None:
    # Its stored summary names cough and chills: the summary is not the patient's words.
    world = await make_world(db, protocol, clock.now())
    never = ["1"] * len(q.ITEMS) + ["36.6"]
    assert await _answer_all(db, protocol, world.patient_id, never, clock) == [
        "report.reply_routine"]
    async with db.read() as s:
        report = (await s.execute(select(SymptomReport))).scalar_one()
        assert (await s.execute(select(Alert))).scalars().all() == []
    assert (report.tier, report.reasons, report.temperature_c) == ("routine", [], 36.6)
    assert "cough.severity=0" in report.raw_text
    assert await pages(db) == []


async def test_severe_questionnaire_answer_still_pages_same_day(
        db: Database, protocol: Protocol, clock: SimulatedClock) -> None:
    world = await make_world(db, protocol, clock.now())
    # Very severe mouth sores (then their interference: a little), the rest never.
    answers = ["5", "2"] + ["1"] * (len(q.ITEMS) - 1) + ["0"]
    assert await _answer_all(db, protocol, world.patient_id, answers, clock) == [
        "report.reply_same_day"]
    async with db.read() as s:
        alert = (await s.execute(select(Alert))).scalar_one()
    assert alert.tier == "same_day"
    assert [p.staff_id for p in await pages(db)] == [world.coordinator, world.coordinator]


async def test_words_that_are_a_report_are_never_dropped(db: Database, protocol: Protocol,
                                                         clock: SimulatedClock) -> None:
    world = await make_world(db, protocol, clock.now())
    await _start(db, protocol, world.patient_id, clock)
    assert await _answer(db, protocol, world.patient_id, "I can't breathe", clock) == [
        "report.reply_emergency", "questionnaire.q_mouth_throat_sores_severity"]


async def test_timeout_reports_partial_answers_and_says_so(db: Database, protocol: Protocol,
                                                           clock: SimulatedClock) -> None:
    world = await make_world(db, protocol, clock.now())
    pid = world.patient_id
    await _start(db, protocol, pid, clock)
    await _answer(db, protocol, pid, "5", clock)  # very severe mouth sores
    later = clock.advance(timedelta(minutes=protocol.reminders.questionnaire_timeout_minutes))
    async with db.read() as s:
        patient = await s.get(Patient, pid)
        assert patient is not None
        assert not await q.is_active(s, patient, later)
    assert await escalation.close_questionnaires(db, protocol, later) == 1
    assert await escalation.close_questionnaires(db, protocol, later) == 0
    async with db.read() as s:
        report = (await s.execute(select(SymptomReport))).scalar_one()
        sent = (await s.execute(select(OutboundMessage).where(
            OutboundMessage.patient_id == pid))).scalars().all()
    assert (report.tier, report.parsed["questionnaire"]) == ("same_day", "timeout")
    assert {m.template_id for m in sent} == {"questionnaire.timed_out", "report.reply_same_day"}
    assert await _answer(db, protocol, pid, "q:1:2", clock) == ["questionnaire.not_active"]


async def test_abandon_and_language_switch(db: Database, protocol: Protocol,
                                           clock: SimulatedClock) -> None:
    world = await make_world(db, protocol, clock.now())
    pid = world.patient_id
    await _start(db, protocol, pid, clock)
    async with db.write() as s:
        patient = await s.get(Patient, pid)
        assert patient is not None
        patient.language = "en"
        replies = await q.answer(s, protocol, patient, "severe", now=clock.now(), inbound_id=1)
    assert replies[0].choices[0].label == "questionnaire.interference_0"
    assert await _answer(db, protocol, pid, "取消", clock) == [
        "questionnaire.abandoned", "report.reply_same_day"]
    await _start(db, protocol, pid, clock)
    async with db.write() as s:
        patient = await s.get(Patient, pid)
        assert patient is not None
        assert [r.message_id for r in await q.abandon(s, patient, now=clock.now())] == [
            "questionnaire.abandoned"]


async def test_weekly_checkin_offered_once_at_local_time(db: Database, protocol: Protocol,
                                                         clock: SimulatedClock) -> None:
    await make_world(db, protocol, clock.now())
    # clock: Monday 00:00 UTC = 08:00 Shanghai; the check-in is Monday 10:00 local.
    assert await escalation.offer_checkins(db, protocol, clock.now()) == 0
    at = clock.advance(timedelta(hours=2))
    assert await escalation.offer_checkins(db, protocol, at) == 1
    assert await escalation.offer_checkins(db, protocol, at) == 0
    async with db.read() as s:
        offer = (await s.execute(select(OutboundMessage))).scalars().all()
    assert [(m.dedupe_key, m.lane) for m in offer if m.template_id.startswith("questionnaire")] \
        == [(f"checkin:{offer[0].patient_id}:2026-03-02", "routine")]


async def test_ended_questionnaires_are_kept_with_their_reason(
        db: Database, protocol: Protocol, clock: SimulatedClock) -> None:
    """Issue 17: a questionnaire's state row is ended, never deleted; another can start."""
    from storage.models import ConversationState

    world = await make_world(db, protocol, clock.now())
    never = ["1"] * len(q.ITEMS) + ["36.6"]
    await _answer_all(db, protocol, world.patient_id, never, clock)
    clock.advance(timedelta(hours=1))
    await _start(db, protocol, world.patient_id, clock)
    await _answer(db, protocol, world.patient_id, "9", clock)  # the leave word, no opt-out
    async with db.read() as s:
        rows = (await s.execute(select(ConversationState).order_by(ConversationState.id))
                ).scalars().all()
    assert [(r.ended_reason, r.ended_at is not None, r.expires_at) for r in rows] == [
        ("complete", True, None), ("abandoned", True, None)]


async def test_question_numbers_count_the_questions_asked(
        db: Database, protocol: Protocol, clock: SimulatedClock) -> None:
    """Issue 16: an item answered 'none' skips the rest of its questions, and the numbers
    printed skip nothing: the next question is number 2, of a total that shrinks."""
    world = await make_world(db, protocol, clock.now())
    pid = world.patient_id

    async def numbers(replies: list[q.Reply]) -> list[tuple[object, object]]:
        return [(r.params["n"], r.params["total"]) for r in replies if "n" in r.params]

    async with db.write() as s:
        patient = await s.get(Patient, pid)
        assert patient is not None
        assert await numbers(await q.start(s, protocol, patient, now=clock.now())) == [(1, 15)]
        # 1 = none: the item's second question is skipped.
        assert await numbers(await q.answer(s, protocol, patient, "1", now=clock.now(),
                                            inbound_id=None)) == [(2, 14)]
        assert await numbers(await q.answer(s, protocol, patient, "banana", now=clock.now(),
                                            inbound_id=None)) == [(2, 14)]  # asked again
        assert await numbers(await q.answer(s, protocol, patient, "2", now=clock.now(),
                                            inbound_id=None)) == [(3, 14)]
        assert await numbers(await q.start(s, protocol, patient, now=clock.now())) == [(3, 14)]

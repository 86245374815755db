"""Issue 16: every printed SMS choice, sent back, gives that choice; Chinese texts ask for no
Latin keyword; the SMS questionnaire is answered by numbers alone in both languages and left
with a word that opts nobody out."""

from __future__ import annotations

import re
from datetime import timedelta
from itertools import count

import pytest
from sqlalchemy import select

from bot.conversation import DOSE_ANSWERS, Conversation, InboundEvent, _language_choice
from engage.clock import SimulatedClock
from messages import catalogue
from messages.keywords import parse_keyword
from messages.sms import SMS_CHOICES, latin_keywords, printed_word, set_line, sms_templates
from scheduler.doses import plan_doses
from storage.db import Database
from storage.models import DoseRecord, OutboundMessage, Patient, SymptomReport
from study import questionnaire as q
from study.dose_answers import dose_choices
from tests.factories import add_site, add_staff, enrol
from trial.protocol import Protocol

LANGUAGES = ("zh", "en")
_ids = count(1)
# What each dose label means when its printed word comes back.
DOSE_MEANING = {"dose.button_taken": "taken", "dose.button_not_taken": "missed",
                "dose.button_snooze": "snooze"}


def _sent_back(name: str, word: str, label_id: str, language: str) -> None:
    """The printed word of one choice, parsed as the conversation parses it, gives the choice."""
    printed = printed_word(word, language)
    if name.startswith("dose"):
        keyword = parse_keyword(printed)
        assert keyword in DOSE_ANSWERS, (name, printed)
        assert DOSE_ANSWERS[keyword] == DOSE_MEANING[label_id], (name, printed)
    elif name == "language":
        assert _language_choice(printed) == label_id.rsplit("_", 1)[1], printed
    elif name == "temperature":
        assert q._parse(q.Step(q.TEMPERATURE, "value"), printed) == (True, None)
    else:
        value = int(label_id.rsplit("_", 1)[1])
        for step in (s for s in q.STEPS if s.attribute == name):
            assert q._parse(step, printed) == (True, value), (step, printed)


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("name", sorted(SMS_CHOICES))
def test_every_printed_choice_sent_back_gives_that_choice(name: str, language: str) -> None:
    line = set_line(name, language)
    for word, label_id in SMS_CHOICES[name]:
        printed = printed_word(word, language)
        assert printed in line
        if printed.isdigit():  # a number is printed with its label, in the reader's language
            assert f"{printed} {catalogue.render(label_id, language)}" in line
        _sent_back(name, word, label_id, language)
    if language == "zh":
        assert latin_keywords(line) == [], line
        assert not re.search(r"[A-Za-z]", line), line


def test_the_choices_the_code_sends_are_the_sets_the_catalogue_declares() -> None:
    """The reminder's and each question's buttons carry exactly the set their template names
    with `#. choices:`, so the walk above covers what patients really receive."""
    templates, problems = sms_templates()
    assert problems == []
    declared = {(t.message_id, t.language): t.choices for t in templates}
    for language in LANGUAGES:
        dose = [(c.sms_word, c.label) for c in dose_choices(7, language) if c.sms_word]
        assert dose == [(w, catalogue.render(label, language))
                        for w, label in SMS_CHOICES["dose"]]
        for message_id in ("dose.reminder", "dose.reminder_hold_for_visit", "dose.follow_up"):
            assert declared[(message_id, language)] == "dose"
        assert declared[("dose.snooze_limit", language)] == "dose_answer"
        assert declared[("chat.language_ask", language)] == "language"
        for step in range(len(q.STEPS)):
            reply = q.question(Patient(language=language), step)
            name = "temperature" if q.STEPS[step].item == q.TEMPERATURE \
                else q.STEPS[step].attribute
            assert declared[(reply.message_id, language)] == name, reply.message_id
            assert [(c.sms_word, c.label) for c in reply.choices] == list(SMS_CHOICES[name])


def test_no_chinese_patient_text_asks_for_a_latin_keyword() -> None:
    templates, _ = sms_templates()
    offenders = {}
    for item in templates:
        if item.language != "zh" or item.budget is None or item.message_id == "chat.link_needed":
            continue
        found = latin_keywords(item.text)
        if found:
            offenders[item.message_id] = found
    assert offenders == {}
    # The questionnaire never tells anyone to send an opt-out word to leave it.
    for language in LANGUAGES:
        intro = catalogue.render("questionnaire.intro", language)
        assert q.LEAVE in intro
        assert parse_keyword(q.LEAVE) is None
        for word in ("CANCEL", "QUIT", "END", "STOP", "取消订阅", "退订"):
            assert word.casefold() not in intro.casefold()


# --- through the real conversation, by SMS ----------------------------------------------------

def _sms(phone: str, text: str, clock: SimulatedClock) -> InboundEvent:
    return InboundEvent("sms", f"SM{next(_ids):032d}", phone, text, None, clock.now(),
                        {"to": "+15005550006"})


async def _last_sms(db: Database, patient_id: int) -> str:
    """The last message queued for the patient: the whole SMS, as stored and sent, less the
    test site's signature (its Latin name "Site" is no keyword to type)."""
    async with db.read() as session:
        row = (await session.execute(select(OutboundMessage).where(
            OutboundMessage.patient_id == patient_id).order_by(OutboundMessage.id.desc())
            .limit(1))).scalar_one()
    assert row.body.endswith("\nSite")
    return row.body.removesuffix("\nSite")


def _printed(text: str) -> list[str]:
    """The numbers an SMS's choice line prints, in order (the line before the signature)."""
    line = next((line for line in reversed(text.splitlines())
                 if line.startswith(("回复", "Reply"))), "")
    return re.findall(r"(?<![0-9.])(\d)(?= )", line)


@pytest.mark.parametrize("language", LANGUAGES)
async def test_each_printed_reminder_number_answers_the_dose_as_printed(
        db: Database, protocol: Protocol, clock: SimulatedClock, language: str) -> None:
    await add_site(db, clock.now())
    core = Conversation(db, protocol, clock)
    phones = {n: f"+86138000000{n:02d}" for n in (1, 2, 3)}
    ids = {n: (await enrol(db, protocol, clock.now(), subject=f"S{n:03d}", phone=phone,
                           language=language)).patient_id for n, phone in phones.items()}
    due = clock.now().replace(hour=0, minute=0)  # 08:00 in Shanghai
    clock.set(due)
    await plan_doses(db, protocol, due)
    expected = {"1": "taken", "2": "missed", "3": "snoozed"}
    for n, patient_id in ids.items():
        text = await _last_sms(db, patient_id)
        printed = _printed(text)
        assert printed == ["1", "2", "3"], text
        if language == "zh":
            assert not re.search(r"[A-Za-z]", text), text
        await core.handle(_sms(phones[n], printed[n - 1], clock))
    async with db.read() as session:
        states = {d.patient_id: d.state for d in (await session.execute(
            select(DoseRecord).where(DoseRecord.due_at <= due))).scalars()}
    assert {str(n): states[ids[n]] for n in ids} == expected
    # "Not taken" is answered with the missed-dose rule and its latest time, in numbers.
    rule = await _last_sms(db, ids[2])
    assert "20:00" in rule  # 08:00 + 12 h


@pytest.mark.parametrize("language", LANGUAGES)
async def test_sms_questionnaire_by_numbers_alone_and_the_leave_word_opts_nobody_out(
        db: Database, protocol: Protocol, clock: SimulatedClock, language: str) -> None:
    await add_site(db, clock.now())
    await add_staff(db, clock.now())
    phone = "+8613800000009"
    patient_id = (await enrol(db, protocol, clock.now(), phone=phone,
                              language=language)).patient_id
    core = Conversation(db, protocol, clock)
    start = "症状" if language == "zh" else "REPORT"
    await core.handle(_sms(phone, start, clock))
    asked = 0
    while True:
        text = await _last_sms(db, patient_id)
        if language == "zh":
            assert not re.search(r"[A-Za-z]", text.replace("REPORT", "")), text
        printed = _printed(text)
        if not printed or text.startswith(("谢谢", "Thank")):
            break
        asked += 1
        # The second option where there is one (never "never": no skipping), else a reading.
        answer = printed[1] if len(printed) > 1 else "37.0"
        await core.handle(_sms(phone, answer, clock))
        clock.advance(timedelta(minutes=1))
    assert asked == len(q.STEPS)
    async with db.read() as session:
        report = (await session.execute(select(SymptomReport))).scalar_one()
    assert report.parsed["questionnaire"] == "complete"
    assert all(v == 1 for answers in report.parsed["answers"].values()
               for v in answers.values()), report.parsed["answers"]
    assert report.temperature_c == 37.0

    # Leaving a second questionnaire with the printed leave word: stopped, not opted out.
    await core.handle(_sms(phone, start, clock))
    await core.handle(_sms(phone, q.LEAVE, clock))
    async with db.read() as session:
        patient = await session.get(Patient, patient_id)
        assert patient is not None
        assert (patient.opted_out, patient.status) == (False, "active")
        assert not await q.is_active(session, patient, clock.now())
    assert (await _last_sms(db, patient_id)).startswith(
        catalogue.render("questionnaire.abandoned", language))

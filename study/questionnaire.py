"""The symptom questionnaire, modelled on PRO-CTCAE (7-day recall), one question at a time.

State lives in the `conversations` table, so it survives restarts and is the same on Telegram
(buttons `q:{step}:{value}`) and SMS (typed numbers or words). It times out after
`reminders.questionnaire_timeout_minutes` without an answer. A finished, timed-out or abandoned
questionnaire becomes a report through the same triage path: what was answered is never thrown
away (a "severe" answer must reach the site even if the patient stops half-way).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from messages import actions, catalogue
from messages.actions import QuestionAction
from messages.channel import Choice
from storage import audit
from storage.audit import Actor
from storage.models import ConversationState, Patient
from study.replies import Reply
from study.reports import receive_report, record_report, scripted_reply
from trial.protocol import Protocol, Tier
from trial.temperature import fold, highest
from trial.triage import Report, triage

FLOW = "questionnaire"
SCALES: dict[str, tuple[str, ...]] = {
    "frequency": ("never", "rarely", "occasionally", "frequently", "almost constantly"),
    "severity": ("none", "mild", "moderate", "severe", "very severe"),
    "interference": ("not at all", "a little bit", "somewhat", "quite a bit", "very much"),
}
# PRO-CTCAE items and their attributes, in order; the first attribute answered 0 skips the rest.
ITEMS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("mouth_throat_sores", ("severity", "interference")),
    ("diarrhoea", ("frequency",)),
    ("cough", ("severity", "interference")),
    ("shortness_of_breath", ("severity", "interference")),
    ("swelling", ("frequency", "severity", "interference")),
    ("rash", ("severity",)),
    ("painful_urination", ("severity",)),
    ("chills", ("frequency", "severity")),
)
TEMPERATURE = "temperature"


@dataclass(frozen=True)
class Step:
    item: str
    attribute: str  # a scale name, or "value" for the temperature


STEPS: tuple[Step, ...] = (*(Step(item, attribute) for item, attributes in ITEMS
                             for attribute in attributes), Step(TEMPERATURE, "value"))

_WORDS: dict[str, dict[str, int]] = {
    "frequency": {"never": 0, "从不": 0, "从没有": 0, "从来没有": 0, "没有": 0, "无": 0,
                  "rarely": 1, "很少": 1, "occasionally": 2, "sometimes": 2, "偶尔": 2,
                  "有时": 2, "有时候": 2, "frequently": 3, "often": 3, "经常": 3, "常常": 3,
                  "almost constantly": 4, "constantly": 4, "always": 4, "几乎一直": 4,
                  "一直": 4, "总是": 4},
    "severity": {"none": 0, "no": 0, "无": 0, "没有": 0, "mild": 1, "轻微": 1, "轻度": 1,
                 "moderate": 2, "中等": 2, "中度": 2, "severe": 3, "严重": 3, "重度": 3,
                 "very severe": 4, "非常严重": 4, "很严重": 4, "极重": 4},
    "interference": {"not at all": 0, "none": 0, "完全没有": 0, "没有": 0, "一点也不": 0,
                     "a little bit": 1, "a little": 1, "有一点": 1, "一点": 1, "somewhat": 2,
                     "有些": 2, "有一些": 2, "quite a bit": 3, "相当多": 3, "较多": 3,
                     "很大": 3, "very much": 4, "非常": 4, "非常大": 4, "极大": 4},
}
_NOT_MEASURED = frozenset({"none", "0", "n", "no", "not measured", "didn't measure",
                           "did not measure", "没测", "没量", "未测", "未测量", "没有测",
                           "没有量", "不知道", "没"})
# Leaving the questions: never a carrier opt-out word (CANCEL, QUIT, END and STOP make Twilio
# stop every message to the number, so they are opt-outs here too, whatever is open).
LEAVE = "9"
_CANCEL = frozenset({LEAVE, "取消", "退出", "退出问卷", "不填了", "不答了", "leave",
                     "stop questions", "no more questions"})
# What a question's button (`QuestionAction`, `q:{step}:{value}`) may carry.
_BUTTON_STEP = re.compile(r"\d{1,3}")
_BUTTON_VALUE = re.compile(r"[a-z0-9]{1,8}")


def _timeout(protocol: Protocol) -> timedelta:
    return timedelta(minutes=protocol.reminders.questionnaire_timeout_minutes)


async def _conversation(session: AsyncSession, patient: Patient) -> ConversationState | None:
    """The patient's open questionnaire (ended ones are kept, with their reason)."""
    return (await session.execute(select(ConversationState).where(
        ConversationState.patient_id == patient.id, ConversationState.flow == FLOW,
        ConversationState.ended_at.is_(None)).with_for_update())).scalar_one_or_none()


def _expires(conversation: ConversationState) -> datetime:
    assert conversation.expires_at is not None  # open conversations always expire
    return conversation.expires_at


async def is_active(session: AsyncSession, patient: Patient, now: datetime) -> bool:
    """Whether the patient is in the middle of a questionnaire that has not timed out."""
    conversation = (await session.execute(select(ConversationState).where(
        ConversationState.patient_id == patient.id, ConversationState.ended_at.is_(None)))
    ).scalar_one_or_none()
    return bool(conversation and conversation.flow == FLOW and _expires(conversation) > now)


def answered(data: dict[str, Any]) -> int:
    """How many questions a questionnaire's answers so far answered."""
    return (sum(len(attributes) for attributes in data.get("answers", {}).values())
            + bool(data.get("temperature_answered")))


def question(patient: Patient, step: int, done: int = 0) -> Reply:
    """The question at a step, rendered for the patient's language of the moment; `done`
    questions were answered before it. Its number counts the questions actually asked, its
    total those asked plus those that may still come (an item answered 'never' skips the rest
    of its questions, so the total can only shrink)."""
    current = STEPS[step]
    params: dict[str, object] = {"n": done + 1, "total": done + len(STEPS) - step}
    # Labels are catalogue ids: rendered in the patient's language of the moment when queued.
    if current.item == TEMPERATURE:
        return Reply("questionnaire.q_temperature", params,
                     (Choice("questionnaire.not_measured",
                             QuestionAction(str(step), "none").pack(), "0"),))
    # By SMS the options are numbered from 1 as printed (messages.sms.SMS_CHOICES): 1 is the
    # first option ("never", "none"), whatever value the scale gives it.
    choices = tuple(
        Choice(f"questionnaire.{current.attribute}_{value}",
               QuestionAction(str(step), str(value)).pack(), str(value + 1))
        for value in range(len(SCALES[current.attribute])))
    return Reply(f"questionnaire.q_{current.item}_{current.attribute}", params, choices)


async def start(session: AsyncSession, protocol: Protocol, patient: Patient, *,
                now: datetime, source: str = "questionnaire") -> list[Reply]:
    """Begin a questionnaire (or carry on with the one already under way)."""
    conversation = await _conversation(session, patient)
    if conversation is not None and _expires(conversation) > now:
        return [Reply("questionnaire.resume"),
                question(patient, conversation.step, answered(conversation.data))]
    replies: list[Reply] = []
    if conversation is not None:
        replies += await _finish(session, protocol, patient, conversation, now=now,
                                 ended="timeout")
        conversation = None
    session.add(ConversationState(patient_id=patient.id, flow=FLOW, step=0,
                                  data={"answers": {}, "raw": [], "source": source},
                                  started_at=now, expires_at=now + _timeout(protocol)))
    await session.flush()
    audit.record(session, at=now, actor=Actor.patient(patient.subject_id),
                 action="questionnaire", entity="patients", entity_id=patient.subject_id,
                 new="started", reason=source)
    return [*replies, Reply("questionnaire.intro"), question(patient, 0)]


def _scale_value(attribute: str, text: str) -> int | None:
    """A typed answer: the option's printed number (1-5) or its words."""
    words = fold(text).strip(" .!。！,，")
    if re.fullmatch(r"[1-5]", words):
        return int(words) - 1
    if words in _WORDS[attribute]:
        return _WORDS[attribute][words]
    for language in catalogue.LOCALES:  # the button labels, typed
        for value in range(len(SCALES[attribute])):
            label = catalogue.render(f"questionnaire.{attribute}_{value}", language)
            if fold(label).strip() == words:
                return value
    return None


def _parse(step: Step, text: str, *, button: bool = False) -> tuple[bool, Any]:
    """(understood, value): a scale value 0-4, or a temperature in C / None (not measured).
    A button's value is the scale value itself; a typed number is the option's printed one."""
    if button and step.item != TEMPERATURE:
        return (True, int(text)) if re.fullmatch(r"[0-4]", text) else (False, None)
    if step.item == TEMPERATURE:
        words = fold(text).strip(" .!。！,，")
        if words in _NOT_MEASURED:
            return True, None
        reading = highest(text, expect_temperature=True)
        return (True, reading.celsius) if reading else (False, None)
    value = _scale_value(step.attribute, text)
    return (value is not None), value


def _next_step(step: int, value: Any) -> int:
    """The next step; "never"/"none" on an item's first attribute skips the rest of the item."""
    current = STEPS[step]
    first = current.item != TEMPERATURE and dict(ITEMS)[current.item][0] == current.attribute
    if first and value == 0:
        following = step + 1
        while following < len(STEPS) and STEPS[following].item == current.item:
            following += 1
        return following
    return step + 1


def _button(text: str) -> QuestionAction | None:
    """The question button an answer is, or None (typed words or numbers)."""
    pressed = actions.parse(text.strip())
    if isinstance(pressed, QuestionAction) and _BUTTON_STEP.fullmatch(pressed.step) \
            and _BUTTON_VALUE.fullmatch(pressed.answer):
        return pressed
    return None


async def answer(session: AsyncSession, protocol: Protocol, patient: Patient, text: str, *,
                 now: datetime, inbound_id: int | None) -> list[Reply]:
    """Take one answer (a button action `q:{step}:{value}` or typed words/numbers)."""
    conversation = await _conversation(session, patient)
    if conversation is None:
        return [Reply("questionnaire.not_active")]
    if _expires(conversation) <= now:
        return await _finish(session, protocol, patient, conversation, now=now,
                             ended="timeout")
    if fold(text).strip(" .!。！") in _CANCEL:
        return await _finish(session, protocol, patient, conversation, now=now,
                             ended="abandoned")
    step = conversation.step
    action = _button(text)
    if action:
        if int(action.step) != step:
            return [Reply("questionnaire.stale"),
                    question(patient, step, answered(conversation.data))]
        text = action.answer
    understood, value = _parse(STEPS[step], text, button=action is not None)
    if not understood:
        return await _not_an_answer(session, protocol, patient, text, step,
                                    answered(conversation.data), now=now,
                                    inbound_id=inbound_id)
    data = dict(conversation.data)
    answers = {k: dict(v) for k, v in data.get("answers", {}).items()}
    current = STEPS[step]
    if current.item == TEMPERATURE:
        data["temperature_c"] = value
        data["temperature_answered"] = True
    else:
        answers.setdefault(current.item, {})[current.attribute] = value
    data["answers"] = answers
    data["raw"] = [*data.get("raw", []), f"{step}={text.strip()[:100]}"]
    following = _next_step(step, value)
    conversation.data = data
    conversation.step = following
    conversation.expires_at = now + _timeout(protocol)
    if following >= len(STEPS):
        return await _finish(session, protocol, patient, conversation, now=now,
                             ended="complete")
    return [question(patient, following, answered(data))]


async def _not_an_answer(session: AsyncSession, protocol: Protocol, patient: Patient,
                         text: str, step: int, done: int, *, now: datetime,
                         inbound_id: int | None) -> list[Reply]:
    """Words that answer nothing may be a report ("I can't breathe"): never let them drop."""
    assessment = triage(Report(text), protocol.triage)
    if assessment.reasons:
        replies = await receive_report(session, protocol, patient, text, now=now,
                                       inbound_id=inbound_id)
        return [*replies, question(patient, step, done)]
    return [Reply("questionnaire.invalid"), question(patient, step, done)]


def _summary(data: dict[str, Any]) -> str:
    parts = [f"{item}.{attribute}={value}"
             for item, attributes in data.get("answers", {}).items()
             for attribute, value in attributes.items()]
    if data.get("temperature_answered"):
        temperature = data.get("temperature_c")
        parts.append(f"temperature={temperature if temperature is not None else 'not measured'}")
    return "; ".join(parts)


async def _finish(session: AsyncSession, protocol: Protocol, patient: Patient,
                  conversation: ConversationState, *, now: datetime, ended: str) -> list[Reply]:
    """End a questionnaire (complete, timeout, abandoned) and report whatever was answered."""
    data = dict(conversation.data)
    answered = bool(data.get("answers")) or bool(data.get("temperature_answered"))
    ended = str(data.get("ended", ended))
    # Kept, ended with its reason (never deleted); no longer due for a timeout.
    conversation.ended_at, conversation.ended_reason = now, ended
    conversation.expires_at = None
    await session.flush()
    audit.record(session, at=now, actor=Actor.patient(patient.subject_id),
                 action="questionnaire", entity="patients", entity_id=patient.subject_id,
                 new=ended, reason=f"step {conversation.step} of {len(STEPS)}")
    closing = {"complete": [], "timeout": [Reply("questionnaire.timed_out")],
               "abandoned": [Reply("questionnaire.abandoned")], "abandoned_later": []}[ended]
    if not answered:
        return closing
    report = await record_report(
        session, protocol, patient, _summary(data), now=now, inbound_id=None,
        source=str(data.get("source", "questionnaire")), temperature_c=data.get("temperature_c"),
        answers=data.get("answers", {}), free_text=False,
        extra={"questionnaire": ended, "raw_answers": data.get("raw", [])})
    tier = Tier(report.tier)
    if ended == "complete":
        return [scripted_reply(tier)]
    # Only an urgent partial answer needs a reply of its own beyond the polite closing.
    return [*closing, scripted_reply(tier)] if tier.is_urgent else closing


async def abandon(session: AsyncSession, patient: Patient, *, now: datetime,
                  protocol: Protocol | None = None) -> list[Reply]:
    """The patient stopped the questionnaire ("cancel", "取消"); answers so far are reported.

    Without the protocol (the contract's call) the answers are reported by the next tick's
    `expire_due`, which has it; with it, at once.
    """
    conversation = await _conversation(session, patient)
    if conversation is None:
        return [Reply("questionnaire.not_active")]
    if protocol is not None:
        return await _finish(session, protocol, patient, conversation, now=now,
                             ended="abandoned")
    conversation.data = {**conversation.data, "ended": "abandoned_later"}
    conversation.expires_at = now
    audit.record(session, at=now, actor=Actor.patient(patient.subject_id),
                 action="questionnaire", entity="patients", entity_id=patient.subject_id,
                 new="abandoned", reason=f"step {conversation.step} of {len(STEPS)}")
    return [Reply("questionnaire.abandoned")]


def timeout_due(now: datetime | ColumnElement[datetime]) -> ColumnElement[bool]:
    """SQL: a questionnaire has timed out (an index look-up)."""
    return exists().where(ConversationState.flow == FLOW, ConversationState.expires_at <= now)


async def expire_due(session: AsyncSession, protocol: Protocol, *, now: datetime,
                     limit: int = 100) -> list[tuple[Patient, list[Reply]]]:
    """Close every questionnaire that timed out; each patient's polite closing replies."""
    due = (await session.execute(select(ConversationState).where(
        ConversationState.flow == FLOW, ConversationState.expires_at <= now)
        .order_by(ConversationState.expires_at).limit(limit).with_for_update(skip_locked=True))
    ).scalars().all()
    closed = []
    for conversation in due:
        patient = await session.get(Patient, conversation.patient_id)
        if patient is not None:
            closed.append((patient, await _finish(session, protocol, patient, conversation,
                                                  now=now, ended="timeout")))
    return closed

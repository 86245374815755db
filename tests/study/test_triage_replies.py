"""The tiers' scripted replies in both languages: emergencies say call 120 and go to the
emergency department now; every routine reply carries the safety line (issue 14)."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from engage.clock import SimulatedClock
from messages import catalogue
from messages.sms import forbidden_words_in
from storage.db import Database
from storage.models import Alert, SymptomReport
from study.reports import scripted_reply
from tests.bot.test_alerts_flow import make_world, report
from trial.protocol import Protocol, Tier

SAFETY_LINE = {
    "en": ("120", "trouble breathing", "chest pain", "swelling of the face or lips", "confusion",
           "heavy bleeding"),
    "zh": ("120", "呼吸困难", "胸痛", "嘴唇肿胀", "意识不清", "大量出血"),
}
EMERGENCY = {"en": ("call 120", "emergency department now"), "zh": ("立即拨打120", "急诊")}


@pytest.mark.parametrize("language", ["en", "zh"])
def test_emergency_reply_says_call_120_and_go_now(language: str) -> None:
    text = catalogue.render(scripted_reply(Tier.EMERGENCY).message_id, language).lower()
    assert all(words in text for words in EMERGENCY[language])


@pytest.mark.parametrize("language", ["en", "zh"])
def test_routine_reply_carries_the_safety_line(language: str) -> None:
    reply = scripted_reply(Tier.ROUTINE)
    text = catalogue.render(reply.message_id, language).lower()
    assert all(words in text for words in SAFETY_LINE[language])
    assert not reply.safety  # routine traffic: the safety lane is for urgent replies


@pytest.mark.parametrize("tier", list(Tier))
@pytest.mark.parametrize("language", ["en", "zh"])
def test_replies_name_no_drug_disease_or_trial(protocol: Protocol, tier: Tier,
                                               language: str) -> None:
    text = catalogue.render(scripted_reply(tier).message_id, language)
    assert forbidden_words_in(text, protocol.sms.forbidden_words) == []
    if tier.is_urgent:
        assert "120" in text


async def test_a_symptom_no_rule_covers_is_a_routine_report_with_the_safety_line(
        sqlite_db: Database, protocol: Protocol, clock: SimulatedClock) -> None:
    world = await make_world(sqlite_db, protocol, clock.now())
    text = "my left knee has felt strange since yesterday"
    assert await report(sqlite_db, protocol, world, text, clock.now()) == [
        "report.reply_routine"]
    async with sqlite_db.read() as s:
        (stored,) = (await s.execute(select(SymptomReport))).scalars()
        assert (await s.execute(select(Alert))).scalars().all() == []
    assert (stored.raw_text, stored.tier) == (text, "routine")
    assert "120" in catalogue.render("report.reply_routine", "zh")

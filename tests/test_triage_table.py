"""Acceptance 1: reports in Chinese and English get the expected tier; properties of triage."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trial.protocol import Protocol, Tier, load_protocol
from trial.triage import Report, triage

E, S, R = Tier.EMERGENCY, Tier.SAME_DAY, Tier.ROUTINE

TABLE: list[tuple[str, Tier]] = [
    # Emergency, every example of clinical-rules.md in both languages
    ("我呼吸困难", E), ("I have trouble breathing", E),
    ("breathless at rest since this morning", E),
    ("胸痛", E), ("bad chest pain since an hour", E), ("my chest hurts", E),
    ("嘴唇肿了，舌头肿", E), ("my face is swelling, swollen lips", E),
    ("throat closing up", E),
    ("她今天意识不清", E), ("he is confused and sleepy", E), ("had a seizure this morning", E),
    ("左边半身无力", E), ("sudden weakness on one side", E), ("说不出话", E),
    ("lost vision in one eye", E),
    ("发烧39度，打寒颤，头晕", E), ("fever with rigors and I feel faint", E),
    ("大出血", E), ("severe bleeding from the nose", E), ("black stools today", E), ("黑便", E),
    ("I can't breathe", E), ("晕倒了", E),
    # Same-day, every example in both languages
    ("发烧38.6度", S), ("体温38.0", S), ("38,5", S), ("temp 101.3F", S), ("三十八度五", S),
    ("37.5 for 3 days", S), ("低烧两天", S), ("fever with chills", S), ("shaking chills", S),
    ("咳嗽加重了", S), ("new cough", S), ("worse shortness of breath climbing stairs", S),
    ("小便痛", S), ("it burns when I pee", S),
    ("painful blistering rash on my side, shingles?", S),
    ("mouth ulcers, I can't eat or drink", S), ("口腔溃疡，吃不下", S),
    ("拉了8次", S), ("diarrhoea 7 times today", S), ("bloody stool", S),
    ("腿肿得厉害", S), ("foamy urine", S), ("尿少", S), ("yellow eyes and dark urine", S),
    ("unusual bruising", S), ("牙龈出血", S), ("wound is red and oozing pus", S),
    ("昨天去了急诊", S), ("she was admitted to hospital", S), ("went to the ER last night", S),
    ("我怀孕了", S), ("I think I'm pregnant", S), ("took extra capsules by mistake", S),
    ("停药两天了", S), ("stopped my medication", S), ("stopped steroids", S),
    ("started fluconazole", S), ("在吃中药", S),
    # a fever that has just gone is still same-day; family members count the same
    ("fever gone now", S), ("已经退烧了", S), ("烧已经退了", S), ("我妈妈发烧了", S),
    ("my husband has a fever", S),
    # misspellings, full-width, mixed languages, emoji
    ("my mother has a feaver", S), ("diarhea all day", S), ("I'm pregant", S),
    ("ＦＥＶＥＲ", S), ("体温３８．５", S), ("today 发烧 and cough", S), ("🤒 38.9", S),
    ("😷 咳嗽", S), ("not sure if I have a fever", S), ("不舒服发烧", S),
    # Routine, every example
    ("有点长痘", R), ("mild ankle swelling", R), ("头痛", R), ("mild nausea", R), ("aches", R),
    ("月经推迟了", R), ("very tired", R), ("忘了吃一次", R), ("I missed a dose yesterday", R),
    # negations
    ("没有发烧", R), ("no fever", R), ("no chest pain", R), ("not pregnant", R),
    ("I don't have a fever", R), ("no fever or cough", R), ("没有发烧、咳嗽", R),
    ("denies chest pain", R), ("没有胸痛", R),
    # tricky numbers that are not temperatures
    ("2026.03.08 check", R), ("at 10:38", R), ("call me 13838512345", R), ("体重40.5kg", R),
    ("temperature 36.8", R), ("体温36.5", R), ("37.2", R),
    # empty, emoji only, very long
    ("", R), ("   ", R), ("😀👍", R), ("I am fine, thank you", R), ("谢谢" * 3000, R),
    ("all good today " * 800 + "but now chest pain", E),
    # negation does not reach across a clause or a conjunction that joins symptoms
    ("没有发烧，但是咳嗽", S), ("no fever but chest pain", E), ("没有胸痛和呼吸困难", E),
]


@pytest.fixture(scope="module")
def rules() -> Protocol:
    return load_protocol()


def test_table_has_enough_cases() -> None:
    assert len(TABLE) >= 60
    assert {tier for _, tier in TABLE} == {E, S, R}


@pytest.mark.parametrize(("text", "tier"), TABLE, ids=[t[:30] for t, _ in TABLE])
def test_expected_tier(rules: Protocol, text: str, tier: Tier) -> None:
    assessment = triage(Report(text), rules.triage)
    assert assessment.tier is tier, assessment.reasons


def test_reasons_are_machine_readable(rules: Protocol) -> None:
    assessment = triage(Report("发烧38.6度，住院了"), rules.triage)
    codes = {r.code for r in assessment.reasons}
    assert {"temperature", "red_flag", "possible_sae"} <= codes
    assert assessment.possible_sae
    assert assessment.temperature_c == 38.6
    stored = [r.as_dict() for r in assessment.reasons]
    assert {"code": "temperature", "tier": "same_day", "matched": ["38.6"]} in stored


def test_possible_sae_only_when_not_negated(rules: Protocol) -> None:
    assert triage(Report("I'm pregnant"), rules.triage).possible_sae
    assert not triage(Report("I'm not pregnant"), rules.triage).possible_sae
    assert triage(Report("我住院了"), rules.triage).possible_sae


def test_questionnaire_answers_raise_to_same_day(rules: Protocol) -> None:
    mild = triage(Report(answers={"cough": {"severity": 1}}), rules.triage)
    severe = triage(Report(answers={"cough": {"severity": 3}}), rules.triage)
    interferes = triage(Report(answers={"diarrhoea": {"frequency": 2},
                                        "mouth_throat_sores": {"severity": 2,
                                                               "interference": 4}}), rules.triage)
    assert (mild.tier, severe.tier, interferes.tier) == (R, S, S)
    assert triage(Report(temperature_c=38.1), rules.triage).tier is S
    assert triage(Report(temperature_c=37.9), rules.triage).tier is R
    chills = triage(Report(temperature_c=37.5, answers={"chills": {"frequency": 1}}),
                    rules.triage)
    assert chills.tier is S


def test_negated_words_are_kept_for_staff(rules: Protocol) -> None:
    assessment = triage(Report("没有发烧"), rules.triage)
    assert assessment.negated == ("发烧",)


_RULES = load_protocol().triage
_RED_FLAGS = sorted({*_RULES.red_flags.emergency.all(), *_RULES.red_flags.same_day.all()})


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.text(max_size=300))
def test_triage_never_raises(text: str) -> None:
    assessment = triage(Report(text), _RULES)
    assert assessment.tier in (E, S, R)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=120), st.sampled_from(_RED_FLAGS), st.sampled_from(["", " ", "，", ". "]))
def test_adding_a_red_flag_never_lowers_the_tier(text: str, word: str, join: str) -> None:
    before = triage(Report(text), _RULES).tier
    after = triage(Report(text + join + word.strip()), _RULES).tier
    assert after.rank >= before.rank
    if join == ". " and word.strip() not in ("temperature", "temp"):
        assert after.rank >= Tier.SAME_DAY.rank  # after a clause break nothing negates it

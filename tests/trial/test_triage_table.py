"""Reports in Chinese and English get the expected tier (clinical rules); properties of triage."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trial.protocol import Protocol, Tier, load_protocol
from trial.triage import Report, triage
from trial.triage.lexicon import bundled

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
    # composition: a body part and a finding apart, either order
    ("嘴唇好像有点肿起来了", E), ("my tongue feels huge and thick", E),
    ("解出来的东西黑乎乎的", E),
    ("it came out jet black", E), ("皮肤和眼睛都变黄了", S), ("右手右脚突然使不上劲", E),
    ("尿里好多泡沫", S), ("测了一下是阳性", S), ("I took today's capsules twice by mistake", S),
    ("药吃完了一直没去拿", S), ("糊里糊涂的，连家里人都叫不出名字", E),
    # traditional characters, homophone slips, misspellings, mixed languages
    ("頭暈得站不穩，發燒39度，一直打寒顫", E), ("呼吸困難", E), ("呼息困难", E), ("她抽出了", E),
    ("胸通", E), ("发少了", S), ("had a sezure", E), ("diarrea ten times today", S),
    ("brething is hard", E), ("我的 face 肿得厉害", E),
    # family members count the same
    ("我爸胸口痛", E), ("my daughter can't breathe", E),
    # gone (routine) versus a fever that has just gone (same-day)
    ("腹泻已经止住了", R), ("the rash went away", R), ("前两天咳嗽，现在不咳了", R),
    ("烧退了", S), ("昨天发烧，今天好了", S),
    # hypothetical questions, the weather, numbers that are not temperatures: no report
    ("要是烧起来该吃什么药？", R), ("what if I get a fever?", R), ("如果胸痛要怎么办", R),
    ("天气预报说明天39度", R), ("heatwave, 40 degrees here", R), ("空调开在26度", R),
    ("血压138/85", R), ("体重38.5公斤", R), ("坐38路公交", R), ("挂号费38.5元", R),
    ("breathing normally today", R), ("好的 谢谢", R), ("ok thanks", R), ("吃过了", R),
    # temperatures after full-width punctuation (read clause by clause)
    ("头痛，39.1度", S), ("体温：38.7", S), ("发烧了，38.6度", S),
]

# Texts that are no report at all ("none"): no reason, label "none".
NONE = ["好的 谢谢", "ok thanks", "吃过了", "没有发烧", "要是烧起来该吃什么药？",
        "天气预报说明天39度",
        "体重38.5公斤", "明天几点复诊？"]


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
    assert {"fever", "hospital_visit"} <= codes
    assert assessment.possible_sae
    assert assessment.temperature_c == 38.6
    stored = [r.as_dict() for r in assessment.reasons]
    assert {"code": "fever", "tier": "same_day", "matched": ["发烧", "38.6"]} in stored


@pytest.mark.parametrize("text", NONE)
def test_no_report_has_no_reason(rules: Protocol, text: str) -> None:
    assessment = triage(Report(text), rules.triage)
    assert (assessment.label, assessment.reasons) == ("none", ())


def test_a_symptom_no_rule_names_is_a_routine_report(rules: Protocol) -> None:
    assessment = triage(Report("手有点抖"), rules.triage)
    assert (assessment.label, [r.code for r in assessment.reasons]) == (
        "routine", ["unclassified_symptom"])


def test_every_reason_code_is_a_criterion_or_a_fallback(rules: Protocol) -> None:
    assessment = triage(Report("我爸胸痛得厉害，体温：38.7，没有咳嗽"), rules.triage)
    assert [r.code for r in assessment.reasons] == ["chest_pain", "fever"]
    assert assessment.reporter == "我爸"
    assert assessment.negated == ("咳嗽",)
    assert assessment.label == "emergency"


def test_how_each_concept_was_found(rules: Protocol) -> None:
    def how(text: str, name: str) -> str:
        found = triage(Report(text), rules.triage).concepts
        return next(c.how for c in found if c.name == name)

    assert how("胸痛", "chest_pain_word") == "exact"
    assert how("胸痛得厲害", "severe") == "traditional"
    assert how("呼息困难", "breathing_hard") == "homophone"
    assert how("had a sezure", "seizure_word") == "misspelling"


def test_common_words_are_never_misspellings(rules: Protocol) -> None:
    for text in ("I will never forget", "there is a couch", "three shirts"):
        assert triage(Report(text), rules.triage).label == "none", text


def test_a_reading_in_a_hypothetical_is_not_kept(rules: Protocol) -> None:
    assert triage(Report("要是烧到39度怎么办？"), rules.triage).temperature_c is None
    assert triage(Report("今天外面37度，我量了36.5"), rules.triage).temperature_c == 36.5


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
# Red-flag phrases: every whole-symptom form of the lexicon that pages on its own.
_RED_FLAGS = sorted(f for e in bundled().entries.values() if e.group == "symptom"
                    for f in e.forms if triage(Report(f), _RULES).tier.is_urgent)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.text(max_size=300))
def test_triage_never_raises(text: str) -> None:
    assessment = triage(Report(text), _RULES)
    assert assessment.tier in (E, S, R)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=120), st.sampled_from(_RED_FLAGS), st.sampled_from(["", " ", "，", ". "]))
def test_adding_a_red_flag_never_lowers_the_tier(text: str, word: str, join: str) -> None:
    word = word.strip()
    if not join and _latin(text[-1:]) and _latin(word[:1]):
        join = " "  # "BREAT" + "a&e" typed together is another word, not a red flag added
    before = triage(Report(text), _RULES).tier
    after = triage(Report(text + join + word), _RULES).tier
    assert after.rank >= before.rank
    if join == ". ":
        assert after.rank >= Tier.SAME_DAY.rank  # after a clause break nothing negates it


def _latin(char: str) -> bool:
    return char.isascii() and char.isalnum()


_NEGATIONS = ["没有", "no ", "没", "not "]
# Phrases a negation can plainly deny (not "没有尿", "not peeing": a negation that is a symptom).
_DENIABLE = [f for f in _RED_FLAGS
             if not any(triage(Report(n + f), _RULES).tier.is_urgent for n in _NEGATIONS)]


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=120), st.sampled_from(_DENIABLE), st.sampled_from(_NEGATIONS))
def test_a_negated_red_flag_never_raises_the_tier(text: str, word: str, negation: str) -> None:
    before = triage(Report(text), _RULES).tier
    after = triage(Report(text + "。" + negation + word), _RULES).tier
    assert after.rank <= before.rank or (after is Tier.SAME_DAY and before is Tier.ROUTINE \
        and _only_red_flag(text + "。" + negation + word))


def _only_red_flag(text: str) -> bool:
    return {r.code for r in triage(Report(text), _RULES).reasons} <= {"red_flag"}

"""Triage lexicons load, every rule is a protocol criterion, spans point at the original text."""

from __future__ import annotations

import pytest

from trial.criteria import RULE_NAMES, concepts_used
from trial.protocol import ProtocolError, bundled_path, load_protocol, parse_protocol
from trial.triage import Report, triage
from trial.triage.lexicon import GROUPS, LexiconError, bundled, parse


def test_lexicon_files_load_with_both_languages() -> None:
    lexicon = bundled()
    assert {e.group for e in lexicon.entries.values()} <= set(GROUPS)
    forms = lexicon.forms("breathing_hard")
    assert "呼吸困难" in forms
    assert "trouble breathing" in forms


def test_every_concept_a_rule_uses_is_in_the_lexicon() -> None:
    assert concepts_used() - set(bundled().entries) == set()


def test_a_concept_keeps_one_group_across_files() -> None:
    with pytest.raises(LexiconError, match="already in symptom"):
        parse([("a.toml", '[symptom]\ncough = ["咳嗽"]\n'), ("b.toml", '[body]\ncough = ["x"]\n')])
    with pytest.raises(LexiconError, match="unknown group"):
        parse([("a.toml", '[symptoms]\ncough = ["咳嗽"]\n')])


def test_every_rule_is_in_exactly_one_tier_of_the_protocol() -> None:
    criteria = load_protocol().triage.criteria
    listed = [*criteria.emergency, *criteria.same_day, *criteria.routine]
    assert sorted(listed) == sorted(RULE_NAMES)


def _with_criteria(old: str, new: str) -> str:
    text = bundled_path().read_text(encoding="utf-8")
    assert old in text
    return text.replace(old, new, 1)


def test_an_unknown_criterion_is_refused_with_its_field_path() -> None:
    text = _with_criteria('emergency = ["breathing_trouble",',
                          'emergency = ["breathing_troubles",')
    with pytest.raises(ProtocolError) as refused:
        parse_protocol(text)
    assert any(p.startswith("triage.criteria.emergency: unknown criterion: breathing_troubles")
               for p in refused.value.problems), refused.value.problems


def test_a_criterion_in_two_tiers_or_none_is_refused() -> None:
    twice = _with_criteria('routine = ["headache",', 'routine = ["chest_pain", "headache",')
    with pytest.raises(ProtocolError, match="more than one tier: chest_pain"):
        parse_protocol(twice)
    missing = _with_criteria('routine = ["headache", ', 'routine = [')
    with pytest.raises(ProtocolError, match="without a tier: headache"):
        parse_protocol(missing)


@pytest.mark.parametrize(("text", "name", "surface"), [
    ("我爸胸痛得厉害", "chest_pain_word", "胸痛"),
    ("頭暈得站不穩，發燒了", "faint_word", "頭暈"),
    ("頭暈得站不穩，發燒了", "fever_word", "發燒了"),
    ("ＦＥＶＥＲ today", "fever_word", "ＦＥＶＥＲ"),
    ("🤒 and a bad cough", "cough", "cough"),
    ("my dad had a sezure", "seizure_word", "sezure"),
    ("呼息困难，好难受", "breathing_hard", "呼息困难"),
])
def test_concept_spans_point_at_the_original_text(text: str, name: str, surface: str) -> None:
    assessment = triage(Report(text), load_protocol().triage)
    found = [c for c in assessment.concepts if c.name == name]
    assert found, assessment.concepts
    assert text[found[0].start:found[0].end] == found[0].text == surface

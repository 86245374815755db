"""One named rule per criterion of the clinical rules; each combines lexicon concepts.

A rule fires when every slot of one of its combinations has a live occurrence (not denied, not
hypothetical, not gone) in one sentence (or one clause where the words would otherwise drift
apart). A slot is a set of concept names: {face part} + {swelling} matches 嘴唇好像有点肿起来了,
"my tongue feels huge and thick", either order, apart. The rule's name is the reason code staff
see; its tier comes from the protocol file ([triage.criteria]), never from here.

Rules about numbers and several findings at once (fever, low-grade fever for a day, fever with
chills, fever with rigors and faintness, stool counts, resolution) are in engine.py, which owns
the temperature readings; they are listed in SPECIAL so the protocol check knows every name.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Combination:
    """Concepts that together meet a criterion; `unless` concepts in the scope block it."""

    slots: tuple[frozenset[str], ...]
    unless: frozenset[str] = frozenset()
    scope: str = "sentence"  # or "clause"


@dataclass(frozen=True)
class Rule:
    """A criterion and the combinations that meet it."""

    name: str
    combinations: tuple[Combination, ...]


def _c(*slots: str, unless: str = "", scope: str = "sentence") -> Combination:
    """A combination written as "a|b", "c": one of a or b, and c."""
    return Combination(tuple(frozenset(s.split("|")) for s in slots),
                       frozenset(unless.split("|")) if unless else frozenset(), scope)


RULES: tuple[Rule, ...] = (
    # emergency by the clinical rules
    Rule("breathing_trouble", (_c("breathing_hard"),
                               _c("breathless|breath_body", "at_rest", scope="clause"),
                               _c("breath_body", "difficulty", unless="exertion", scope="clause"),
                               _c("breathless", "severe", unless="exertion", scope="clause"))),
    Rule("chest_pain", (_c("chest_pain_word"), _c("chest", "pain|discomfort|tight"))),
    Rule("face_swelling", (_c("face_swelling_word"), _c("face_part", "swelling|tight"),
                           _c("throat", "blocked", scope="clause"))),
    Rule("confusion", (_c("confusion_word"),)),
    Rule("seizure", (_c("seizure_word"),)),
    Rule("one_sided_weakness", (_c("one_sided_word"), _c("weakness", "side"))),
    Rule("speech_loss", (_c("speech_word"), _c("speech_body", "speech_trouble", scope="clause"),
                         _c("wrong_words", "speech_body|sudden|keeps|reporter"))),
    Rule("vision_loss", (_c("vision_word"), _c("eye", "vision_lost"),
                         _c("eye", "blurry", "sudden"))),
    Rule("severe_bleeding", (_c("severe_bleeding_word"),
                             _c("bleeding_word|blood", "heavy_bleeding"),
                             _c("bleeding_word|blood", "much", scope="clause"),
                             _c("blood", "nausea_word|cough", scope="clause"),
                             _c("bleeding_word|blood|menstrual_word", "soaked"),
                             _c("nausea_word|cough", "red_colour", scope="clause"))),
    Rule("black_stools", (_c("black_stool_word"), _c("stool|diarrhoea_word", "black"))),
    Rule("fainting", (_c("fainting_word"),)),
    # same-day
    Rule("shaking_chills", (_c("chills_word"),)),
    Rule("cough_or_breathless", (_c("cough"), _c("breathless"))),
    Rule("painful_urination", (_c("urination_pain_word"), _c("urine", "pain"))),
    Rule("shingles", (_c("shingles_word"), _c("blister|rash", "band"))),
    Rule("mouth_ulcers_cannot_eat", (_c("mouth_ulcer|mouth", "cannot_eat"),
                                     _c("mouth_ulcer", "severe", unless="mild"))),
    Rule("severe_diarrhoea", (_c("bloody_stool_word"), _c("diarrhoea_word|stool", "blood"),
                              _c("diarrhoea_word", "severe"))),
    Rule("leg_swelling", (_c("leg_swelling_word"), _c("leg", "swelling", unless="mild"),
                          _c("ankle|leg", "swelling", "severe"))),
    Rule("urine_change", (_c("urine_change_word"), _c("urine", "less_urine"))),
    Rule("jaundice", (_c("jaundice_word"), _c("jaundice_body", "yellow"),
                      _c("urine", "dark_colour"))),
    Rule("bruising_bleeding", (_c("bleeding_word"), _c("bruise_word", unless="injury"),
                               _c("blood"), _c("skin_spots", "purple", unless="injury"))),
    Rule("wound_problem", (_c("pus_word"), _c("wound", "wound_finding|swelling|pain"))),
    Rule("hospital_visit", (_c("hospital_word"),
                            _c("hospital_place", unless="planned_visit", scope="clause"))),
    Rule("pregnancy", (_c("pregnant_word"), _c("pregnancy_test", "positive"),
                       _c("test", "positive", unless="infection"))),
    Rule("extra_capsules", (_c("extra_dose_word"), _c("extra", "medicine|steroid"))),
    Rule("stopped_medication", (_c("stopped_word"), _c("stop", "medicine|steroid"))),
    Rule("interacting_medicine", (_c("interacting_word"),)),
    # routine
    Rule("headache", (_c("headache_word"), _c("head", "pain"))),
    Rule("nausea", (_c("nausea_word"),)),
    Rule("aches", (_c("ache_word"), _c("joint", "pain"))),
    Rule("tiredness", (_c("tired_word"),)),
    Rule("acne", (_c("acne_word"),)),
    Rule("menstrual", (_c("menstrual_word"),)),
    Rule("mouth_sores", (_c("mouth_ulcer"),)),
    Rule("ankle_swelling", (_c("ankle", "swelling"), _c("leg", "swelling", "mild"))),
    Rule("mild_diarrhoea", (_c("diarrhoea_word"),)),
    Rule("missed_dose", (_c("missed_word"),)),
)

# Rules computed in engine.py from readings, counts and several concepts at once.
SPECIAL = ("fever", "low_grade_fever_sustained", "fever_with_chills", "fever_rigors_faint",
           "resolved")
RULE_NAMES: tuple[str, ...] = (*(r.name for r in RULES), *SPECIAL)

# Events that count once they are over: a seizure that stopped, a stay in hospital after
# discharge, a nosebleed that stopped (the corpus's conventions, from the clinical rules).
EVENTS = frozenset({"fever_word", "bleeding_word", "severe_bleeding_word", "hospital_word",
                    "hospital_place",
                    "seizure_word", "fainting_word", "chills_word", "extra_dose_word",
                    "stopped_word", "pregnant_word", "black_stool_word", "confusion_word",
                    "speech_word", "vision_word", "one_sided_word", "breathing_hard"})

# Concepts that are red-flag words by themselves: when no rule explains them they still page
# same-day pending review ("breath", 胸口 + something no rule names).
ALARM = frozenset({"breath_body", "chest"})


def concepts_used() -> set[str]:
    """Every concept name the rules refer to (the lexicon must define each)."""
    names = {n for rule in RULES for comb in rule.combinations
             for slot in comb.slots for n in slot}
    names |= {n for rule in RULES for comb in rule.combinations for n in comb.unless}
    return names | set(ALARM) | {"fever_word", "chills_word", "faint_word", "fainting_word",
                                 "diarrhoea_word", "stool"}

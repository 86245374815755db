"""Triage of a symptom report into a tier, with every reason that fired. Pure and total.

The bot only buckets: it never grades, reassures or judges causality. A red-flag word can only
raise a tier; a plainly negated word ("没有发烧", "no chest pain") does not fire.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from trial.protocol import Tier
from trial.protocol import Triage as Rules
from trial.temperature import Reading, _arabic, fold, readings

# Clause breaks end the reach of a negation ("no fever, but chest pain").
_BREAK = "|"
# Not 不过 ("but"): it is also the middle of 喘不过气.
_BREAK_WORDS = frozenset({"but", "however", "though", "although", "yet", "但", "但是", "可是",
                          "然而", "却"})
_PUNCT_BREAKS = set(".;:!?。；：！？\n()（）[]【】\"“”")
# Words a negation may reach across: "not have a fever", "没有再发烧".
_FILLERS = frozenset({"a", "an", "any", "the", "have", "has", "had", "got", "having", "more",
                      "much", "real", "signs", "sign", "of", "further", "feel", "feeling",
                      "been", "is", "am", "are", "was", "were", "experienced", "experiencing",
                      "new", "really", "my", "his", "her", "their", "recent", "obvious",
                      "有", "再", "在", "感", "觉", "到", "出", "现", "任", "何", "什", "么",
                      "明", "显", "太", "会", "是", "也", "怎", "啥", "一", "点"})
_FILLER_BUDGET = 3
# A negation reaches along a list: "no fever or cough", "没有发烧、咳嗽". Not across "and"/"和":
# "no fever and chest pain" is ambiguous, so it stays urgent.
_LIST_JOINS = frozenset({"or", "nor", "、", "/", "或", "或者", "及"})
_EXTRA_NEGATIONS = ("don't", "doesn't", "didn't", "hasn't", "haven't", "hadn't", "isn't",
                    "wasn't", "aren't", "weren't", "free of")
# "Not sure if it is a fever" is doubt, not a denial.
_DOUBT = frozenset({"sure", "certain", "know", "确定", "知道", "清楚", "肯定"})
# Common words one letter away from a red-flag word: never read as a misspelling of it.
_NOT_MISSPELLINGS = frozenset({
    "never", "fewer", "lever", "sever", "fiver", "couch", "rough", "tough", "dough", "bough",
    "child", "would", "found", "round", "sound", "mound", "bound", "pound", "hound", "tried",
    "tires", "hired", "fired", "wired", "timed", "tiled", "verbal", "breed", "painted", "shirt",
    "shout", "sport", "shore", "there", "where", "these", "those", "three", "other", "after",
    "about", "could", "should", "month", "smell", "blond", "flood", "chess", "forget", "cheat",
    "cheap", "fight", "eight", "night", "light", "right", "might", "sight", "tight", "fever's",
    "period", "blister", "severs", "server", "seven"})

# Built-in meanings (beyond the protocol's lists) that combine into rules of the clinical
# rules: "fever with rigors and faintness" is an emergency; "any fever with chills" same-day.
_FEVER = ("发烧", "发热", "高烧", "低烧", "体温高", "烧", "fever", "feverish", "febrile",
          "high temp", "temperature")
_CHILLS = ("寒战", "寒颤", "打寒颤", "打冷颤", "发冷", "发抖", "chills", "chill", "shivering",
           "shaking", "rigors", "rigor")
_FAINT = ("头晕", "晕", "眼前发黑", "faint", "faintness", "dizzy", "lightheaded",
          "light-headed", "light headed", "fainted", "passed out")
# Everyday ways of saying what the clinical rules name, beyond the protocol's own lists (which
# stay the main source): "breath" itself is a red flag there, and "chest hurts" is chest pain.
_BUILTIN_EMERGENCY = ("chest hurts", "chest hurting", "pain in my chest", "pain in his chest",
                      "pain in her chest", "胸疼", "胸口疼", "心口痛", "喘不了气", "上不来气")
_BUILTIN_SAME_DAY = ("breath*", "烧到", "体温升高")
# The clinical rules' possible SAEs are "hospital, emergency room": every common way to say it.
_BUILTIN_SAE = ("er", "emergency department", "hospitalised", "hospitalized",
                "hospitalisation", "hospitalization", "intensive care", "重症监护", "抢救室")
# Words that only mean "I have a temperature": a reading in the text decides instead.
_READING_WORDS = frozenset({"temperature", "temp", "high temp"})
_FEVER_GONE = re.compile(
    r"退烧|烧退|热退|退热|不烧了|烧已经退|烧已退|fever (is |has |had )?(gone|went|broke|down|"
    r"subsided|resolved|better|away)|no longer (have |has |had )?(a )?fever|fever free|"
    r"fever-free|had a fever")
_STOOL_CONTEXT = re.compile(r"拉|泻|便|肚子|厕所|stool|diarrh|poo|bowel|loose|toilet|runs")
_STOOL_COUNT = re.compile(r"(?<![\d.])(\d{1,2})\s*(?:次|回|遍|趟|times?\b|x\b)")
_DURATION = re.compile(
    r"(?<![\d.])(\d{1,3})\s*(?:个|整)?\s*(天|日|days?\b|小时|钟头|hours?\b|hrs?\b)")
_WORD = re.compile(r"[a-z0-9][a-z0-9'&\-]*")
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


@dataclass(frozen=True)
class Reason:
    """Why a report is in its tier: a machine-readable code and the words that fired."""

    code: str
    tier: Tier
    matched: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """The stored form."""
        return {"code": self.code, "tier": self.tier.value, "matched": list(self.matched)}


@dataclass(frozen=True)
class Report:
    """What a patient told us: free text, a reading given apart, questionnaire answers."""

    text: str = ""
    temperature_c: float | None = None
    # item -> attribute -> 0..4 (PRO-CTCAE scale: never/none/not at all .. very much)
    answers: Mapping[str, Mapping[str, int]] = field(default_factory=dict)


@dataclass(frozen=True)
class Assessment:
    """The tier, the reasons that fired, and what was read from the report."""

    tier: Tier
    reasons: tuple[Reason, ...]
    possible_sae: bool
    temperature_c: float | None
    readings: tuple[Reading, ...] = ()
    stools: int | None = None
    negated: tuple[str, ...] = ()

    def parsed(self) -> dict[str, Any]:
        """The parsed values, as stored with the report."""
        return {"temperature_c": self.temperature_c,
                "readings": [r.text for r in self.readings],
                "stools": self.stools, "negated": list(self.negated)}


@dataclass(frozen=True)
class _Unit:
    text: str
    start: int  # index into the folded text (for nothing but debugging)


@dataclass(frozen=True)
class _Hit:
    word: str  # the word as the protocol spells it
    found: str  # what the patient wrote
    start: int  # unit index
    end: int


def _units(text: str) -> list[str]:
    """Words (English), characters (Chinese) and clause breaks, in order."""
    units: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        match = _WORD.match(text, i)
        if match:
            word = match.group(0).strip("-'")
            units.append(_BREAK if word in _BREAK_WORDS else word)
            i = match.end()
            continue
        if char in _PUNCT_BREAKS or char == ",":
            units.append(_BREAK)
        elif _CJK.match(char) or char in "、/&":
            units.append(_BREAK if char in _BREAK_WORDS else char)
        i += 1
    # Two-character Chinese clause breaks (但是, 可是, 不过...).
    for index in range(len(units) - 1):
        if units[index] + units[index + 1] in _BREAK_WORDS:
            units[index] = units[index + 1] = _BREAK
    return units


def _stem(word: str) -> str:
    """Coughing -> cough, chills -> chill: enough English morphology to match meaning."""
    if len(word) >= 6 and word.endswith("ing"):
        return word[:-3]
    if len(word) >= 5 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def _near(a: str, b: str) -> bool:
    """At most one edit (insert, delete, substitute, swap neighbours) apart."""
    if a == b:
        return True
    if abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        if len(diff) == 1:
            return True
        return (len(diff) == 2 and diff[1] == diff[0] + 1 and a[diff[0]] == b[diff[1]]
                and a[diff[1]] == b[diff[0]])
    short, long_ = (a, b) if len(a) < len(b) else (b, a)
    return any(long_[:i] + long_[i + 1:] == short for i in range(len(long_)))


@functools.lru_cache(maxsize=65_536)
def _unit_matches(pattern: str, unit: str, *, prefix: bool) -> bool:
    if unit == _BREAK:
        return False
    if prefix:
        return unit.startswith(pattern)
    if pattern == unit:
        return True
    if not pattern.isascii() or not unit.isascii():
        return False
    p, u = _stem(pattern), _stem(unit)
    if p == u:
        return True
    # Misspellings: one edit on longer words only, and never a common word.
    return (len(p) >= 5 and len(u) >= 5 and unit not in _NOT_MISSPELLINGS
            and u not in _NOT_MISSPELLINGS and _near(p, u))


@functools.lru_cache(maxsize=4096)
def _pattern(phrase: str) -> tuple[tuple[str, ...], bool, str]:
    """A phrase compiled once: its units, whether it is a prefix (`breath*`), the word."""
    prefix = phrase.endswith("*")
    units = tuple(u for u in _units(fold(phrase.rstrip("*"))) if u != _BREAK)
    return units, prefix, phrase.strip().rstrip("*")


_Tables = tuple[dict[Tier, tuple[str, ...]], dict[str, tuple[str, ...]]]
# id(rules) -> (rules, tables): the rules object is kept, so its id is never reused meanwhile.
_BUILT: dict[int, tuple[Rules, _Tables]] = {}


def _tables(rules: Rules) -> _Tables:
    """The phrases of each tier and of each built-in meaning, built once per protocol object
    (protocols are frozen; they are not hashable, hence the id)."""
    built = _BUILT.get(id(rules))
    if built is not None and built[0] is rules:
        return built[1]
    words = {
        Tier.EMERGENCY: (*rules.red_flags.emergency.all(), *_BUILTIN_EMERGENCY),
        Tier.SAME_DAY: (*rules.red_flags.same_day.all(), *_BUILTIN_SAME_DAY),
        Tier.ROUTINE: tuple(rules.red_flags.routine.all()),
    }
    groups = {"fever": _FEVER, "chills": _CHILLS, "faint": _FAINT,
              "sae": (*rules.sae_words.all(), *_BUILTIN_SAE)}
    for phrase in [*(p for ps in words.values() for p in ps),
                   *(p for ps in groups.values() for p in ps)]:
        _pattern(phrase)  # compile every phrase now, not on the first report
    if len(_BUILT) >= 64:  # tests load many protocols; a service holds one
        _BUILT.clear()
    _BUILT[id(rules)] = (rules, (words, groups))
    return words, groups


class _Text:
    """A report's text, folded and split once, searched for many phrases."""

    def __init__(self, text: str) -> None:
        self.folded = fold(text)
        self.units = _units(self.folded)
        self._by_first: dict[str, list[int]] = {}
        for index, unit in enumerate(self.units):
            self._by_first.setdefault(unit, []).append(index)

    def find(self, phrase: str, *, exact: bool = False) -> list[_Hit]:
        """Every place the phrase occurs (exact, stemmed, or one typo on long words)."""
        compiled, prefix, word = _pattern(phrase)
        pattern = list(compiled)
        if not pattern:
            return []
        first = pattern[0]
        if len(pattern) == 1 and prefix:
            starts = [i for u, idx in self._by_first.items() if u.startswith(first) for i in idx]
        elif first.isascii() and len(first) >= 4 and not exact:
            starts = [i for u, idx in self._by_first.items()
                      if _unit_matches(first, u, prefix=False) for i in idx]
        else:
            starts = list(self._by_first.get(first, []))
        hits = []
        for start in sorted(starts):
            end = start + len(pattern)
            if end > len(self.units):
                continue
            window = self.units[start:end]
            if (exact and window == pattern) or (not exact and all(
                    _unit_matches(p, window[k], prefix=prefix and k == len(pattern) - 1)
                    for k, p in enumerate(pattern))):
                found = "".join(self.units[start:end]) if not first.isascii() else \
                    " ".join(self.units[start:end])
                hits.append(_Hit(word, found, start, end))
        return hits


def _negation_spans(text: _Text, negations: list[str], inside: list[_Hit]) -> dict[int, int]:
    """End unit index -> start of each negation that is not part of a red-flag phrase."""
    spans: dict[int, int] = {}
    units = text.units
    for word in [*negations, *_EXTRA_NEGATIONS]:
        for hit in text.find(word, exact=True):
            if any(h.start <= hit.start < h.end for h in inside):
                continue  # the 不 of 吃不下 is part of the symptom
            after = units[hit.end] if hit.end < len(units) else ""
            if after in _DOUBT or (hit.end + 1 < len(units)
                                   and units[hit.end] + units[hit.end + 1] in _DOUBT):
                continue
            # A-not-A questions (有没有, 是不是, 会不会) ask; they do not deny.
            if hit.start > 0 and hit.start + 1 < len(units) and not units[hit.start].isascii() \
                    and units[hit.start - 1] == units[hit.start + 1]:
                continue
            spans[hit.end - 1] = hit.start
    return spans


def _negated(hit: _Hit, units: list[str], negations: dict[int, int],
             others: dict[int, int]) -> bool:
    """Whether a negation reaches this hit across fillers, list joins and other symptoms."""
    index = hit.start - 1
    budget = _FILLER_BUDGET
    while index >= 0:
        unit = units[index]
        if unit == _BREAK:
            return False
        if index in negations:
            return True
        if index in others:
            index = others[index] - 1
            continue
        if unit in _LIST_JOINS:
            index -= 1
            continue
        if unit in _FILLERS and budget > 0:
            budget -= 1
            index -= 1
            continue
        return False
    return False


def _hours(text: str) -> int:
    """The longest duration mentioned, in hours (2天 -> 48, 30 hours -> 30)."""
    longest = 0
    for number, unit in _DURATION.findall(text):
        value = int(number)
        longest = max(longest, value * 24 if unit in ("天", "日") or unit.startswith("day")
                      else value)
    return longest


def _stools(text: str) -> int | None:
    """A stool count for diarrhoea ("拉了8次", "diarrhoea 7 times"), only about stools."""
    counts = [int(m.group(1)) for m in _STOOL_COUNT.finditer(text)
              if _STOOL_CONTEXT.search(text[max(0, m.start() - 12):m.end() + 12])]
    return max(counts) if counts else None


def _answer_reasons(answers: Mapping[str, Mapping[str, int]]) -> list[Reason]:
    fired = []
    for item, attributes in answers.items():
        for attribute, value in attributes.items():
            # Severe / very severe, quite a bit / very much; diarrhoea almost constantly.
            if (attribute in ("severity", "interference") and value >= 3) or (
                    attribute == "frequency" and item == "diarrhoea" and value >= 4):
                fired.append(f"{item}.{attribute}={value}")
    return [Reason("questionnaire", Tier.SAME_DAY, tuple(fired))] if fired else []


def triage(report: Report, rules: Rules) -> Assessment:
    """Bucket a report into a tier by the protocol's thresholds; never raises on any text."""
    text = _Text(report.text[:20_000])
    numeric = _arabic(text.folded)
    words, groups = _tables(rules)
    all_hits = [(tier, hit) for tier, phrases in words.items() for p in phrases
                for hit in text.find(p)]
    group_hits = [(name, hit) for name, phrases in groups.items() for p in phrases
                  for hit in text.find(p)]
    everything = [h for _, h in all_hits] + [h for _, h in group_hits]
    negations = _negation_spans(text, rules.negations.all(), everything)
    spans: dict[int, int] = {}
    for h in everything:
        spans[h.end - 1] = min(h.start, spans.get(h.end - 1, h.start))

    def alive(hit: _Hit) -> bool:
        # A word inside a longer phrase (烧 in 发烧) shares the phrase's negation.
        outer = min((h for h in everything if h.start <= hit.start and h.end >= hit.end),
                    key=lambda h: (h.start, -h.end), default=hit)
        return not _negated(outer, text.units, negations, spans)

    found = readings(report.text[:20_000])
    values = [r.celsius for r in found]
    if report.temperature_c is not None:
        values.append(report.temperature_c)
    temperature = max(values) if values else None

    reasons: list[Reason] = []
    negated: list[str] = []
    by_tier: dict[Tier, list[str]] = {Tier.EMERGENCY: [], Tier.SAME_DAY: [], Tier.ROUTINE: []}
    for tier, hit in all_hits:
        if not alive(hit):
            negated.append(hit.found)
        elif hit.word in _READING_WORDS and temperature is not None:
            continue  # "my temperature is 36.8": the number decides
        elif hit.word not in by_tier[tier]:
            by_tier[tier].append(hit.word)
    for tier in (Tier.EMERGENCY, Tier.SAME_DAY):
        if by_tier[tier]:
            reasons.append(Reason("red_flag", tier, tuple(by_tier[tier])))
    if by_tier[Tier.ROUTINE]:
        reasons.append(Reason("routine_symptom", Tier.ROUTINE, tuple(by_tier[Tier.ROUTINE])))

    live = {name: sorted({h.word for n, h in group_hits if n == name and alive(h)})
            for name in groups}
    if temperature is not None and temperature >= rules.fever_c:
        reasons.append(Reason("temperature", Tier.SAME_DAY, (f"{temperature:.1f}",)))
    elif temperature is not None and temperature >= rules.low_grade_fever_c and \
            _hours(numeric) > rules.fever_sustained_hours:
        reasons.append(Reason("low_grade_fever_sustained", Tier.SAME_DAY,
                              (f"{temperature:.1f}", f"{_hours(numeric)}h")))
    gone = _FEVER_GONE.search(text.folded)
    if gone:
        reasons.append(Reason("fever_resolved", Tier.SAME_DAY, (gone.group(0),)))
    fever = bool((temperature is not None and temperature >= rules.low_grade_fever_c)
                 or gone or [w for w in live["fever"] if w not in _READING_WORDS
                             or temperature is None])
    chills = report.answers.get("chills", {}).get("frequency", 0) > 0 or \
        report.answers.get("chills", {}).get("severity", 0) > 0 or bool(live["chills"])
    if fever and chills and live["faint"]:
        reasons.append(Reason("fever_rigors_faint", Tier.EMERGENCY,
                              (*live["chills"], *live["faint"])))
    elif fever and chills:
        reasons.append(Reason("fever_with_chills", Tier.SAME_DAY, tuple(live["chills"])))

    stools = _stools(numeric)
    if stools is not None and stools >= rules.diarrhoea_same_day_stools:
        reasons.append(Reason("stool_count", Tier.SAME_DAY, (str(stools),)))
    reasons.extend(_answer_reasons(report.answers))
    possible_sae = bool(live["sae"])
    if possible_sae:
        reasons.append(Reason("possible_sae", Tier.SAME_DAY, tuple(live["sae"])))

    tier = max((r.tier for r in reasons), key=lambda t: t.rank, default=Tier.ROUTINE)
    return Assessment(tier=tier, reasons=tuple(reasons), possible_sae=possible_sae,
                      temperature_c=temperature, readings=tuple(found), stools=stools,
                      negated=tuple(dict.fromkeys(negated)))


def asks_about_allocation(text: str, rules: Rules) -> bool:
    """Whether a message asks which medication (active or placebo) the patient receives."""
    folded = fold(text)
    return any(fold(word) in folded for word in rules.allocation_questions.all())

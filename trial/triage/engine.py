"""Triage of a symptom report into a tier, with every reason that fired. Pure and total.

normalise -> concepts (lexicon forms, homophones, misspellings) -> context (negation, hypothetical,
resolution, reporter) -> rules (one per criterion) -> tier (the protocol's [triage.criteria]).
The bot only buckets: it never grades, reassures or judges causality. A red-flag word no rule
explains still pages same-day pending review; a text that names a symptom but fires no rule is a
routine "unclassified_symptom", never silently nothing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from trial import criteria as named
from trial.protocol import Tier
from trial.protocol import Triage as Rules
from trial.temperature import Reading, fold, readings
from trial.triage import context as ctx
from trial.triage.concepts import Matcher, Occurrence, Unit, units
from trial.triage.lexicon import SYMPTOM_GROUPS, bundled
from trial.triage.normalise import Normalised, normalise


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
class Concept:
    """A concept found in the report; start/end index the ORIGINAL text."""

    name: str
    start: int
    end: int
    text: str
    how: str  # exact, traditional, homophone, misspelling
    negated: bool = False
    hypothetical: bool = False
    resolved: bool = False


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
    concepts: tuple[Concept, ...] = ()
    near_misses: tuple[str, ...] = ()
    reporter: str | None = None

    @property
    def label(self) -> str:
        """The corpus's label: "none" for no report at all, else the tier."""
        return "none" if self.tier is Tier.ROUTINE and not self.reasons else self.tier.value

    def parsed(self) -> dict[str, Any]:
        """The parsed values, as stored with the report."""
        return {"temperature_c": self.temperature_c,
                "readings": [r.text for r in self.readings],
                "stools": self.stools, "negated": list(self.negated),
                "reporter": self.reporter}


class _Engine:
    """The lexicon compiled with the protocol's own cue words, built once per word set."""

    def __init__(self, negations: tuple[str, ...], sae_words: tuple[str, ...]) -> None:
        lexicon = bundled()
        extra = [*(("negation", "context", w) for w in negations),
                 *(("sae_event", "qualifier", w) for w in sae_words)]
        self.matcher = Matcher(lexicon, extra)
        self.fillers = frozenset(u.key for f in lexicon.forms("filler")
                                 for u in units(normalise(f).text))
        self.joins = frozenset(u.key for f in lexicon.forms("list_join")
                               for u in units(normalise(f).text))


_ENGINES: dict[tuple[tuple[str, ...], tuple[str, ...]], _Engine] = {}


def _engine(rules: Rules) -> _Engine:
    key = (tuple(rules.negations.all()), tuple(rules.sae_words.all()))
    built = _ENGINES.get(key)
    if built is None:
        if len(_ENGINES) >= 16:  # a service holds one protocol; tests a few
            _ENGINES.clear()
        built = _ENGINES[key] = _Engine(*key)
    return built


@dataclass
class _Read:
    """One report's text as read: units, occurrences and their context."""

    text: Normalised
    units: list[Unit]
    occurrences: list[Occurrence]
    context: ctx.Context

    def span(self, occ: Occurrence) -> tuple[int, int]:
        if not self.units or occ.first >= len(self.units):
            return (0, 0)
        return self.text.span(self.units[occ.first].start, self.units[occ.last - 1].end)

    def surface(self, occ: Occurrence) -> str:
        start, end = self.span(occ)
        return self.text.original[start:end]

    def __post_init__(self) -> None:
        self.still_clauses = sorted({self.context.clause[min(o.first, len(self.units) - 1)]
                                     for o in self.occurrences if o.name == "still"})
        self._live: dict[str, list[int]] = {}
        self._said: dict[str, list[int]] = {}
        for i, o in enumerate(self.occurrences):
            flags = self.context.flags[i]
            if not (flags.negated or flags.hypothetical):
                self._said.setdefault(o.name, []).append(i)
                if not flags.resolved:
                    self._live.setdefault(o.name, []).append(i)

    def live(self, name: str) -> list[int]:
        """Occurrences said to be there now."""
        return self._live.get(name, [])

    def said(self, name: str) -> list[int]:
        """Occurrences not denied and not hypothetical (a fever that has gone still counts)."""
        return self._said.get(name, [])


def _read(report_text: str, engine: _Engine) -> _Read:
    text = normalise(report_text)
    found = units(text.text)
    occurrences = engine.matcher.find(text, found)
    context = ctx.read(found, occurrences, engine.fillers, engine.joins)
    return _Read(text, found, occurrences, context)


def _scope_of(read: _Read, occ: Occurrence, scope: str) -> int:
    index = min(occ.first, len(read.units) - 1)
    return (read.context.clause if scope == "clause" else read.context.sentence)[index]


def _combination(read: _Read, comb: named.Combination) -> tuple[list[int] | None, bool]:
    """The occurrences meeting a combination (None if unmet), and whether part of it was met."""
    met = [any(name in (read._said if name in named.EVENTS else read._live) for name in slot)
           for slot in comb.slots]
    if not all(met):  # the common case, answered without building lists
        return None, any(met)
    live_by_slot = [[i for name in slot for i in
                     (read.said(name) if name in named.EVENTS else read.live(name))]
                    for slot in comb.slots]
    partial = any(live_by_slot)
    if not all(live_by_slot):
        return None, partial
    blocked = {_scope_of(read, read.occurrences[i], comb.scope)
               for name in comb.unless for i in read.live(name)}
    scopes = [{_scope_of(read, read.occurrences[i], comb.scope): i for i in slot}
              for slot in live_by_slot]
    for scope in scopes[0]:
        if scope not in blocked and all(scope in s for s in scopes):
            return [s[scope] for s in scopes], True
    if comb.scope == "clause":
        # "说话比早上清楚一点了，还是有点含糊": a clause that goes on with "still" (还是, 仍然)
        # speaks of what the clause before it named.
        for clause in read.still_clauses:
            if clause in blocked:
                continue
            picked = [s.get(clause, s.get(clause - 1)) for s in scopes]
            if all(i is not None for i in picked) and any(clause in s for s in scopes) and (
                    len({read.context.sentence[min(read.occurrences[i].first,
                                                   len(read.units) - 1)]
                         for i in picked if i is not None}) == 1):
                return [i for i in picked if i is not None], True
    return None, partial


# Durations: "3 days", 两天, 48小时, since yesterday; the longest one counts, in hours.
_CN_DIGITS = {"一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8,
              "九": 9, "十": 10, "几": 3, "半": 0}
_EN_NUMBERS = {"one": 1, "a": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6,
               "seven": 7, "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12,
               "fifteen": 15, "twenty": 20, "several": 3, "few": 3, "couple": 2}
_DURATION = re.compile(
    r"(\d{1,3}|[一二两三四五六七八九十几]{1,3}|one|two|three|four|five|six|seven|eight|nine|"
    r"ten|several|few|couple|a)\s*(?:个|整|多)?\s*(?:of\s+)?"
    r"(天|日|星期|礼拜|周|days?\b|weeks?\b|小时|钟头|hours?\b|hrs?\b)")
_SINCE = re.compile(r"昨天开始|从昨天|昨天到现在|昨天起|前天|since yesterday|since last|"
                    r"every day|每天|天天|好几天|这几天|上周|上个星期|all week|for days|"
                    r"开始就一直|"
                    r"since (?:mon|tues|wednes|thurs|fri|satur|sun)day|"
                    r"从?(?:周|星期|礼拜)[一二三四五六日天]|"
                    r"yesterday and|still today|all day yesterday|昨天到今天|昨天和今天|两天了")


def _number(token: str) -> int:
    if token.isdigit():
        return int(token)
    if token in _EN_NUMBERS:
        return _EN_NUMBERS[token]
    if "十" in token:
        tens, _, ones = token.partition("十")
        return _CN_DIGITS.get(tens, 1) * 10 + _CN_DIGITS.get(ones, 0) if len(tens) <= 1 else 0
    return max((_CN_DIGITS.get(c, 0) for c in token), default=0)


def _hours(text: str) -> int:
    """The longest duration mentioned, in hours (2天 -> 48, 30 hours -> 30, since yesterday ->
    over a day)."""
    longest = 25 if _SINCE.search(text) else 0
    for number, unit in _DURATION.findall(text):
        value = _number(number)
        if unit in ("天", "日") or unit.startswith("day"):
            value *= 24
        elif unit in ("星期", "礼拜", "周") or unit.startswith("week"):
            value *= 24 * 7
        longest = max(longest, value)
    return longest


_STOOL_COUNT = re.compile(
    r"(\d{1,2}|[一二两三四五六七八九十几]{1,3}|one|two|three|four|five|six|seven|eight|nine|ten|"
    r"eleven|twelve|fifteen|twenty)\s*(?:or\s+\d{1,2}\s*|[多来几余]\s*)?"
    r"(?:次|回|遍|趟|times?\b|x\b|ones?\b|watery|loose|stools?\b|bowel)")


def _stools(read: _Read) -> int | None:
    """A stool count for diarrhoea ("拉了8次", "diarrhoea 7 times"), only in a sentence about
    stools."""
    sentences = {_scope_of(read, read.occurrences[i], "sentence")
                 for name in ("diarrhoea_word", "stool") for i in read.said(name)}
    if not sentences:
        return None
    counts = []
    for sentence in sentences:
        spans = [u for u, s in zip(read.units, read.context.sentence, strict=True)
                 if s == sentence]
        if not spans:
            continue
        piece = read.text.text[spans[0].start:spans[-1].end]
        for match in _STOOL_COUNT.finditer(piece):
            whole = match.group(0)
            counts.append(max([_number(match.group(1)),
                               *(int(d) for d in re.findall(r"\d{1,2}", whole))]))
    return max(counts) if counts else None


# "吃了9粒", "一下吃了六颗胶囊", "took 6 capsules", "had 5 of my pills": a count taken at once.
_TAKEN_COUNT = re.compile(
    r"(?:吃|服|吞)[了下掉过]{0,2}\s*(\d{1,2}|[一二两三四五六七八九十几]{1,3})\s*(?:粒|颗|个胶囊)"
    r"|\b(?:took|take|taken|had|swallowed|taking)\s+(?:all\s+)?(?:my\s+|the\s+)?"
    r"(\d{1,2}|four|five|six|seven|eight|nine|ten|eleven|twelve)\s+(?:of\s+(?:my|the)\s+)?"
    r"(?:capsules?|pills?|caps)\b")
# A count over several days or of what is left is no dose taken at once (这周吃了21粒, 还剩9粒).
_NOT_ONE_DOSE = re.compile(
    r"剩|还有|一共|总共|盒|瓶|周|星期|礼拜|个月|(?:\d+|[两三四五六七八九十几])\s*天|"
    r"\b(?:left|remaining|bottle|box|pack|week|weeks|days|month|total|altogether)\b")


def _clauses(read: _Read) -> dict[int, str]:
    """The normalised text of each clause, by clause number."""
    spans: dict[int, tuple[int, int]] = {}
    for unit, clause in zip(read.units, read.context.clause, strict=True):
        start, end = spans.get(clause, (unit.start, unit.end))
        spans[clause] = (min(start, unit.start), max(end, unit.end))
    return {clause: read.text.text[a:b] for clause, (a, b) in spans.items()}


def _capsules_at_once(read: _Read) -> int | None:
    """The largest count of capsules said to be taken at once, outside an "if" or the weather."""
    if not any(o.group == "medicine" for o in read.occurrences):
        return None  # no capsule counted (粒, capsules are medicine words)
    counts = []
    for clause, piece in _clauses(read).items():
        if clause in read.context.idle_clauses or _NOT_ONE_DOSE.search(piece):
            continue
        for match in _TAKEN_COUNT.finditer(piece):
            counts.append(_number(match.group(1) or match.group(2)))
    return max(counts) if counts else None


# A stretch without the medicine: "停了五天", "一个礼拜没吃药了", "for a week" (not "三天前").
_STRETCH = re.compile(
    r"(\d{1,3}|[一二两三四五六七八九十几]{1,3}|two|three|four|five|six|seven|several|few|couple|a)"
    r"\s*(?:个|整|多)?\s*(?:of\s+)?(天|日|星期|礼拜|周|days?\b|weeks?\b)(?!\s*(?:前|以前|之前|ago))")


def _stretch_hours(piece: str) -> int:
    longest = 0
    for number, unit in _STRETCH.findall(piece):
        value = _number(number) * (24 if unit in ("天", "日") or unit.startswith("day")
                                   else 24 * 7)
        longest = max(longest, value)
    return longest


def _stopped_for_days(read: _Read) -> list[int]:
    """A not-taken or stop word in a clause that says for how many days (2 or more), with no
    symptom before it there (拉肚子停了两天 is the diarrhoea stopping)."""
    candidates = [*read.live("missed_word"), *read.live("stop"), *read.said("stopped_word")]
    pieces = _clauses(read) if candidates else {}
    for i in candidates:
        occ = read.occurrences[i]
        clause = read.context.clause[min(occ.first, len(read.units) - 1)]
        if clause in read.context.idle_clauses or _stretch_hours(pieces.get(clause, "")) < 48:
            continue
        if any(o.group in SYMPTOM_GROUPS and o.last <= occ.first
               and read.context.clause[o.first] == clause for o in read.occurrences):
            continue
        return [i]
    return []


_BARE_FAHRENHEIT = re.compile(r"(?<![\d.,:/-])(99|10[0-7])(?![\d.,:/])")


def _finding_undone(read: _Read, body: Occurrence) -> bool:
    """A finding denied or gone after this body part in its clause (胸口不闷, 胸口不痛了)."""
    clause = read.context.clause
    here = clause[min(body.first, len(read.units) - 1)]
    for j, o in enumerate(read.occurrences):
        if o.first < body.last or clause[min(o.first, len(read.units) - 1)] != here:
            continue
        flags = read.context.flags[j]
        if (o.group == "finding" and (flags.negated or flags.resolved)) or o.name in (
                "resolved_after", "resolved_before"):
            return True
    return False


def _clause_readings(read: _Read) -> list[Reading]:
    """Temperatures read clause by clause; a clause about the weather or a "what if" is not a
    reading of the body."""
    found: list[Reading] = []
    by_clause: dict[int, list[int]] = {}
    for index, clause in enumerate(read.context.clause):
        by_clause.setdefault(clause, []).append(index)
    measured = {read.context.clause[o.first] for o in read.occurrences
                if o.name in ("measure", "fever_word", "chills_word")}
    for clause, members in by_clause.items():
        if clause in read.context.idle_clauses or clause in read.context.placed_clauses:
            continue
        if (read.context.sentence[members[0]] in read.context.worldly_sentences
                and clause not in measured):
            continue  # "heatwave, 40 degrees here": the weather's sentence
        start, end = read.text.span(read.units[members[0]].start, read.units[members[-1]].end)
        piece = read.text.original[start:end]
        # A clause that names a measurement reads a bare number too ("temp hit 38", "temp 102").
        here = readings(piece, expect_temperature=clause in measured)
        if not here and clause in measured:
            here = [Reading(round((int(m.group(1)) - 32) * 5 / 9, 1), m.group(1), True)
                    for m in _BARE_FAHRENHEIT.finditer(fold(piece))]
        found.extend(here)
    return found


def _tier(rules: Rules, name: str) -> Tier:
    return rules.criteria.tier_of(name)


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
    """Bucket a report into a tier by the protocol's criteria; never raises on any text."""
    try:
        return _triage(report, rules)
    except Exception:  # a bug must never drop a report: page it for a human to read
        reasons = (Reason("unreadable", Tier.SAME_DAY, ()),) if report.text.strip() else ()
        return Assessment(Tier.SAME_DAY if reasons else Tier.ROUTINE, reasons, False,
                          report.temperature_c)


def _triage(report: Report, rules: Rules) -> Assessment:
    engine = _engine(rules)
    read = _read(report.text, engine)
    occ, flags = read.occurrences, read.context.flags
    reasons: list[Reason] = []
    fired: dict[str, list[int]] = {}
    near: list[str] = []

    def fire(name: str, used: list[int], extra: tuple[str, ...] = ()) -> None:
        fired[name] = used
        words = tuple(dict.fromkeys([*(read.surface(occ[i]) for i in used), *extra]))
        reasons.append(Reason(name, _tier(rules, name), words))

    for rule in named.RULES:
        partial = False
        for comb in rule.combinations:
            used, part = _combination(read, comb)
            if used is not None:
                fire(rule.name, used)
                break
            partial = partial or (part and len(comb.slots) > 1)
        else:
            if partial:
                near.append(rule.name)

    # Temperatures, fever and chills.
    found = _clause_readings(read)
    values = [r.celsius for r in found]
    if report.temperature_c is not None:
        values.append(report.temperature_c)
    temperature = max(values) if values else None
    fever_words = read.said("fever_word")
    chills = read.live("chills_word")
    faint = [*read.live("faint_word"), *read.live("fainting_word")]
    chills_answered = any(report.answers.get("chills", {}).get(a, 0) > 0
                          for a in ("frequency", "severity"))
    hot = temperature is not None and temperature >= rules.fever_c
    if fever_words or hot:
        fire("fever", fever_words, (f"{temperature:.1f}",) if hot and temperature else ())
    sustained = _hours(fold(read.text.text))
    if (not hot and temperature is not None and temperature >= rules.low_grade_fever_c
            and sustained > rules.fever_sustained_hours):
        fire("low_grade_fever_sustained", [], (f"{temperature:.1f}", f"{sustained}h"))
    feverish = bool(fever_words) or (temperature is not None
                                     and temperature >= rules.low_grade_fever_c)
    if feverish and (chills or chills_answered):
        if chills and faint:
            fire("fever_rigors_faint", [*fever_words, *chills, *faint])
        fire("fever_with_chills", [*fever_words, *chills])

    capsules = _capsules_at_once(read)
    if "extra_capsules" not in fired and capsules is not None and capsules > rules.daily_capsules:
        fire("extra_capsules", [], (str(capsules),))
    if "stopped_medication" not in fired:
        stopped = _stopped_for_days(read)
        if stopped:
            fire("stopped_medication", stopped)
            reasons[:] = [r for r in reasons if r.code != "missed_dose"]
            fired.pop("missed_dose", None)

    stools = _stools(read)
    if stools is not None and stools >= rules.diarrhoea_same_day_stools:
        fire("severe_diarrhoea", [], (str(stools),))
    reasons.extend(_answer_reasons(report.answers))

    symptomatic = [i for i, o in enumerate(occ) if o.group in SYMPTOM_GROUPS]
    gone = [i for i in symptomatic if flags[i].resolved and not flags[i].negated
            and not flags[i].hypothetical and occ[i].name != "fever_word"]
    if gone and not fired:
        fire("resolved", gone)
    denied_clauses = {read.context.clause[occ[i].first] for i in symptomatic if flags[i].negated}
    # A body part whose finding is denied in its clause (嘴唇没有肿) names nothing.
    live_symptoms = [i for i in symptomatic if flags[i].live and not (
        occ[i].group == "body" and read.context.clause[occ[i].first] in denied_clauses)]
    rank = max((r.tier.rank for r in reasons), default=-1)
    # 胸口不闷, 胸口不痛了: a chest whose finding after it is denied or gone is no alarm.
    alarms = [i for name in named.ALARM for i in read.live(name)
              if not _finding_undone(read, occ[i])]
    if alarms and rank < Tier.SAME_DAY.rank:
        reasons.append(Reason("red_flag", Tier.SAME_DAY,
                              tuple(dict.fromkeys(read.surface(occ[i]) for i in alarms))))
    elif live_symptoms and not reasons:
        reasons.append(Reason("unclassified_symptom", Tier.ROUTINE, tuple(dict.fromkeys(
            read.surface(occ[i]) for i in live_symptoms))))

    possible_sae = "hospital_visit" in fired or bool(read.live("sae_event"))
    tier = max((r.tier for r in reasons), key=lambda t: t.rank, default=Tier.ROUTINE)
    concepts = []
    for i, o in enumerate(occ):
        start, end = read.span(o)
        concepts.append(Concept(o.name, start, end, read.text.original[start:end], o.how,
                                flags[i].negated, flags[i].hypothetical, flags[i].resolved))
    negated = [read.surface(occ[i]) for i in symptomatic if flags[i].negated]
    reporter = read.context.reporter
    return Assessment(
        tier=tier, reasons=tuple(reasons), possible_sae=possible_sae, temperature_c=temperature,
        readings=tuple(found), stools=stools, negated=tuple(dict.fromkeys(negated)),
        concepts=tuple(concepts), near_misses=tuple(n for n in near if n not in fired),
        reporter=read.surface(reporter) if reporter else None)


def asks_about_allocation(text: str, rules: Rules) -> bool:
    """Whether a message asks which medication (active or placebo) the patient receives."""
    folded = fold(text)
    return any(fold(word) in folded for word in rules.allocation_questions.all())

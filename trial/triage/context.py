"""What the words around a concept say about it: denied, asked about, gone, not about the body.

All scopes stop at a clause break (a comma, "but", 但是), so "没有发烧，但是胸口很痛" denies only
the fever. Cues come from the lexicon's context group; a cue inside a longer occurrence belongs to
that occurrence (the 不 of 吃不下 / 喘不过气, the "not" of "not sure if", the 没有 of 没有力气),
which concepts.py already dropped.

- negation: forward from the cue across fillers (有, 再, any, the), list joins (或, 、, or) and
  other concepts ("no swelling of the lips"), never across 和 / "and" (ambiguous, so urgent).
  A-not-A questions (有没有, 会不会) do not deny. 不咳了 / "not coughing any more" is gone, not
  denied (a negated concept followed by 了 or "anymore").
- hypothetical: forward to the clause's end from 如果/要是/万一/"what if"/"if" (in a question,
  to the sentence's end and over the cue's whole clause); backward from 的话; a whole clause
  about the weather or the room (天气, 空调, weather) is not about the body, and readings in its
  sentence count only in a clause that names a measurement (体温, temp).
- resolved: backward from 已经好了/止住了/went away in the clause (or the clause before when the
  cue stands alone: "前两天咳嗽，现在好了"), forward from "no longer"/不再; once a concept has
  gone, its earlier mentions have gone too. Improvement (好一点了, easing) is not resolution.
- present: a clause that says "now" (现在, 此刻, "right now", "at the moment") reports what it
  names even under an "if" or a should-I question ("is it ok if I have chest pain now?").
- other person: a clause that opens on a neighbour or a colleague (never a relative, friend or
  carer, who may be writing about the patient) is not a report, unless it says I or me too.
- place: a number read in a clause about a balcony or a fridge is no body temperature.
- long ago: a clause about years ago or childhood (去年, 小时候, "10 years ago") is history.
- normal: "breathing is fine", 体温正常 denies what the clause names.
- reporter: a relative writing (我爸, my daughter) counts the same; noted for staff.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from trial.triage.concepts import Occurrence, Unit
from trial.triage.lexicon import SYMPTOM_GROUPS

_CLAUSE_PUNCT = frozenset(",.;!?\n()~…|")
_SENTENCE_PUNCT = frozenset(".;!?\n")
_NEGATORS_ANOT_A = frozenset({"不", "没"})
_QUESTION_PARTICLES = frozenset({"吗", "么", "嘛"})
_FIRST_PERSON = frozenset({"我", "i", "me", "i'm", "im", "i've", "i'd", "myself", "my"})
_POSSESSIVE = frozenset({"my", "our", "the", "a", "an", "我", "我们", "的", "们"})
_FILLER_BUDGET = 3
# Groups a cue acts on (negating a context cue or an exclusion means nothing).
_TARGETS = frozenset({*SYMPTOM_GROUPS, "qualifier", "medicine"})
# What can go away: a symptom or a finding; a body part does not ("my vision 没了" is a loss).
_GOING = frozenset({"symptom", "finding"})


@dataclass
class Flags:
    """What the context says about one occurrence."""

    negated: bool = False
    hypothetical: bool = False
    resolved: bool = False

    @property
    def live(self) -> bool:
        """Said to be there now."""
        return not (self.negated or self.hypothetical or self.resolved)


@dataclass
class Context:
    """Flags per occurrence, clause and sentence per unit, the clauses not about the body now."""

    flags: list[Flags]
    clause: list[int]
    sentence: list[int]
    idle_clauses: set[int] = field(default_factory=set)  # hypothetical or not about the body
    present_clauses: set[int] = field(default_factory=set)  # say "now": an "if" there reports
    placed_clauses: set[int] = field(default_factory=set)  # a balcony, a fridge: no body reading
    worldly_sentences: set[int] = field(default_factory=set)  # mention the weather, money...
    reporter: Occurrence | None = None


def read(found_units: list[Unit], occurrences: list[Occurrence], fillers: frozenset[str],
         joins: frozenset[str]) -> Context:
    """Flags for every occurrence of a text."""
    n = len(found_units)
    breaks = [False] * n
    sentence_breaks = [False] * n
    for i, unit in enumerate(found_units):
        if unit.kind == "other" and unit.key in _CLAUSE_PUNCT:
            breaks[i] = True
            sentence_breaks[i] = unit.key in _SENTENCE_PUNCT
    for occ in occurrences:
        if occ.name == "clause_break":
            for i in range(occ.first, occ.last):
                breaks[i] = True
    clause, sentence = [0] * n, [0] * n
    c = s = 0
    for i in range(n):  # a break belongs to what it ends
        clause[i], sentence[i] = c, s
        if breaks[i]:
            c += 1
        if sentence_breaks[i]:
            s += 1
    flags = [Flags() for _ in occurrences]
    targets = [i for i, o in enumerate(occurrences) if o.group in _TARGETS]
    covering: dict[int, list[int]] = {}  # unit -> targets over it (overlaps: 没有|有血)
    for index in targets:
        for unit_index in range(occurrences[index].first, occurrences[index].last):
            covering.setdefault(unit_index, []).append(index)
    context = Context(flags, clause, sentence)

    def clause_of(occ: Occurrence) -> int:
        return clause[occ.first] if occ.first < n else c

    def sentence_of(occ: Occurrence) -> int:
        return sentence[occ.first] if occ.first < n else s

    questions = {sentence[i] for i in range(n) if found_units[i].key == "?"}
    # A Chinese question often ends on its particle, without a mark: "...要去医院吗"
    for i in range(n):
        if found_units[i].key in _QUESTION_PARTICLES and (i + 1 == n or sentence_breaks[i + 1]
                                                         or breaks[i + 1]):
            questions.add(sentence[i])

    def walk(start: int) -> list[int]:
        """Targets reached forward from a cue ending at `start`."""
        reached: list[int] = []
        budget = _FILLER_BUDGET
        j = start
        while j < n and not breaks[j]:
            here = covering.get(j)
            if here:
                reached.extend(here)
                j = max(occurrences[k].last for k in here)
                continue
            key = found_units[j].key
            if key in joins:
                j += 1
            elif key in fillers and budget > 0:
                budget -= 1
                j += 1
            else:
                break
        return reached

    def after_is_gone(occ: Occurrence) -> bool:
        j = occ.last
        while j < n and found_units[j].key in ("啦", "呢"):
            j += 1
        return j < n and found_units[j].key in ("了", "anymore")

    cues = [o for o in occurrences if o.group == "context"]
    # A clause that says "now" (现在, "right now") reports what it names even under an "if":
    # "is it ok if I have chest pain now?", "我现在胸痛要不要去医院".
    # ("现在如果发烧了..." / "now if ...": a "now" that opens the "if" dates the question.)
    opens_if = {o.first for o in cues if o.name == "hypothetical"}
    context.present_clauses = {clause_of(o) for o in cues
                               if o.name == "present" and o.last not in opens_if}
    for cue in cues:
        if cue.name == "negation":
            unit = found_units[cue.first]
            if (cue.last - cue.first == 1 and unit.key in _NEGATORS_ANOT_A and cue.first > 0
                    and cue.last < n and found_units[cue.first - 1].key
                    == found_units[cue.last].key):
                _hypothetical_forward(context, occurrences, targets, cue, clause)
                continue
            for k in walk(cue.last):
                if after_is_gone(occurrences[k]) or _gone_cue_after(occurrences, k, cue,
                                                                    clause_of):
                    flags[k].resolved = True
                else:
                    flags[k].negated = True
        elif cue.name == "resolved_before":
            for k in walk(cue.last):
                flags[k].resolved = True
        elif cue.name == "hypothetical":
            # "要是烧起来，该吃什么药？": a question's "if" reaches its whole sentence
            if sentence_of(cue) in questions:
                _hypothetical_forward(context, occurrences, targets, cue, sentence)
                for k in targets:  # "should I go to the ER if ...?": its clause is asked too
                    if (clause_of(occurrences[k]) == clause_of(cue)
                            and clause_of(occurrences[k]) not in context.present_clauses):
                        flags[k].hypothetical = True
            else:
                _hypothetical_forward(context, occurrences, targets, cue, clause)
        elif cue.name == "hypothetical_after":  # 的话, "if it ever happens": what came before
            here = sentence_of(cue)
            asked = here in questions  # "有胸痛的话是打120吗？": the rest of the question too
            for k in targets:
                if sentence_of(occurrences[k]) == here and (occurrences[k].last <= cue.first
                                                            or asked):
                    flags[k].hypothetical = True
                    context.idle_clauses.add(clause_of(occurrences[k]))
            context.idle_clauses.add(clause_of(cue))
        elif cue.name == "not_body":
            for k in targets:
                if clause_of(occurrences[k]) == clause_of(cue):
                    flags[k].hypothetical = True
            context.idle_clauses.add(clause_of(cue))
            context.worldly_sentences.add(sentence_of(cue))
        elif cue.name == "other_person":
            # "my neighbour had a stroke", 楼下的阿姨住院了: the other person opens the clause
            # (after my / 我的 at most), and the rest of it says no I or me ("朋友说我脸色发黄").
            here = clause_of(cue)
            opening = [i for i in range(cue.first) if clause[i] == here]
            rest = [i for i in range(cue.last, n) if clause[i] == here]
            if (all(found_units[i].key in _POSSESSIVE for i in opening)
                    and not any(found_units[i].key in _FIRST_PERSON for i in rest)):
                for k in targets:
                    if clause_of(occurrences[k]) == here:
                        flags[k].hypothetical = True
                context.idle_clauses.add(here)
        elif cue.name == "place":
            context.placed_clauses.add(clause_of(cue))
        elif cue.name == "long_ago":  # "died 10 years ago", 小时候: history, not a report now
            for k in targets:
                if clause_of(occurrences[k]) == clause_of(cue):
                    flags[k].hypothetical = True
            context.idle_clauses.add(clause_of(cue))
        elif cue.name == "normal":  # "breathing is fine", 体温正常: what came before is fine
            if sentence_of(cue) in questions:
                continue  # "大便是黑的正常吗？" asks whether a finding is normal: it is reported
            for k in targets:
                if (clause_of(occurrences[k]) == clause_of(cue)
                        and occurrences[k].last <= cue.first):
                    flags[k].negated = True
        elif cue.name == "resolved_after":
            # "has gone black", "变黄了": a change into a finding, not a symptom going away
            if not covering.get(cue.last) or not any(
                    occurrences[k].group in SYMPTOM_GROUPS for k in covering[cue.last]):
                _resolve_backward(context, occurrences, targets, cue, clause_of)
        elif cue.name == "reporter" and context.reporter is None:
            context.reporter = cue
    # Cold in a sentence about the weather is the weather's ("下雨了，路上好冷", "it's freezing
    # out there"), unless a fever is said there too.
    for k in targets:
        sentence_k = sentence_of(occurrences[k])
        if (occurrences[k].name == "chills_word" and sentence_k in context.worldly_sentences
                and not any(o.name in ("fever_word", "measure") and sentence_of(o) == sentence_k
                            for o in occurrences)):
            flags[k].hypothetical = True
    # Once a concept has gone, its earlier mentions have gone too ("咳嗽...现在不咳了").
    for k in targets:
        if flags[k].resolved and not flags[k].negated:
            for j in targets:
                if (occurrences[j].name == occurrences[k].name
                        and occurrences[j].first < occurrences[k].first
                        and not flags[j].hypothetical):
                    flags[j].resolved = True
    return context


def _hypothetical_forward(context: Context, occurrences: list[Occurrence], targets: list[int],
                          cue: Occurrence, scope: list[int]) -> None:
    """Everything after the cue in its clause (or sentence) is asked about, not reported."""
    n = len(scope)
    here = scope[cue.first] if cue.first < n else -1
    for k in targets:
        first = occurrences[k].first
        if (first >= cue.last and first < n and scope[first] == here
                and context.clause[first] not in context.present_clauses):
            context.flags[k].hypothetical = True
    for i in range(cue.first, n):
        if scope[i] != here:
            break
        if context.clause[i] not in context.present_clauses:
            context.idle_clauses.add(context.clause[i])


def _gone_cue_after(occurrences: list[Occurrence], k: int, cue: Occurrence,
                    clause_of: Callable[[Occurrence], int]) -> bool:
    """A resolution cue later in the same clause turns a denial into "gone" (不再...了)."""
    of = clause_of
    target = occurrences[k]
    return any(o.name == "resolved_after" and o.first >= target.last
               and of(o) == of(target) for o in occurrences)


def _resolve_backward(context: Context, occurrences: list[Occurrence], targets: list[int],
                      cue: Occurrence, clause_of: Callable[[Occurrence], int]) -> None:
    of = clause_of
    here = of(cue)
    before = [k for k in targets if of(occurrences[k]) == here
              and occurrences[k].last <= cue.first and occurrences[k].group in _GOING]
    if not before:
        # A cue standing alone ("现在好了") speaks of the clause before it, in the sentence.
        sentence = context.sentence[cue.first] if cue.first < len(context.sentence) else -1
        earlier = [k for k in targets if occurrences[k].last <= cue.first
                   and occurrences[k].group in _GOING
                   and context.sentence[occurrences[k].first] == sentence]
        if earlier:
            last_clause = max(of(occurrences[k]) for k in earlier)
            before = [k for k in earlier if of(occurrences[k]) == last_clause]
    for k in before:
        context.flags[k].resolved = True

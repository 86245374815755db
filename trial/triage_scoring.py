"""How well triage buckets a labelled corpus: recall per tier and criterion, paging, confusion.

Pure: it parses text it is given and calls the triage function it is given. A corpus is a
tab-separated table whose header names at least `text` and `tier` (tiers: emergency, same_day,
routine, none); a `criterion` column, when present, adds the per-criterion figures.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trial.triage import Assessment

# Most urgent first, as the confusion matrix is printed.
LABELS = ("emergency", "same_day", "routine", "none")
URGENT = frozenset({"emergency", "same_day"})
_RANK = {"none": 0, "routine": 1, "same_day": 2, "emergency": 3}
_REQUIRED = ("text", "tier")


class CorpusError(ValueError):
    """A labelled corpus that cannot be scored; `line` is 1-based (the header is line 1)."""

    def __init__(self, line: int, problem: str) -> None:
        super().__init__(f"line {line}: {problem}")
        self.line = line
        self.problem = problem


@dataclass(frozen=True)
class Row:
    """One labelled text of the corpus."""

    line: int
    text: str
    tier: str
    criterion: str = ""
    columns: Mapping[str, str] = field(default_factory=dict)


def parse_corpus(content: str) -> list[Row]:
    """The rows of a labelled TSV; the first bad line raises CorpusError naming it."""
    lines = content.removeprefix("\ufeff").split("\n")
    header = [name.strip() for name in lines[0].rstrip("\r").split("\t")]
    missing = [name for name in _REQUIRED if name not in header]
    if missing:
        raise CorpusError(1, "the header must name the columns " + ", ".join(
            f"`{name}`" for name in _REQUIRED) + f" (missing {', '.join(missing)})")
    doubled = sorted({name for name in header if header.count(name) > 1})
    if doubled:
        raise CorpusError(1, f"column named twice: {', '.join(doubled)}")
    rows = []
    for number, raw in enumerate(lines[1:], start=2):
        line = raw.rstrip("\r")
        if not line.strip():
            continue  # blank lines (and the final newline) carry nothing
        cells = line.split("\t")
        if len(cells) != len(header):
            raise CorpusError(number, f"{len(cells)} tab-separated fields, the header has "
                                      f"{len(header)}")
        columns = dict(zip(header, cells, strict=True))
        text, tier = columns["text"], columns["tier"].strip()
        if not text.strip():
            raise CorpusError(number, "empty text")
        if tier not in _RANK:
            raise CorpusError(number, f"unknown tier {tier!r} (one of {', '.join(LABELS)})")
        rows.append(Row(number, text, tier, columns.get("criterion", "").strip(), columns))
    if not rows:
        raise CorpusError(1, "no labelled rows")
    return rows


def label_of(assessment: Assessment) -> str:
    """The predicted label: the tier, or `none` for a routine text that fired nothing."""
    return assessment.label


@dataclass(frozen=True)
class Outcome:
    """A row and what triage made of it."""

    row: Row
    predicted: str
    reasons: tuple[str, ...] = ()

    @property
    def paged(self) -> bool:
        """Whether staff would be paged (emergency or same-day)."""
        return self.predicted in URGENT

    @property
    def right(self) -> bool:
        """Whether the predicted label is the expected one."""
        return self.predicted == self.row.tier

    @property
    def handled(self) -> bool:
        """At or above the expected tier; a routine or none text without paging."""
        at_least = _RANK[self.predicted] >= _RANK[self.row.tier]
        return at_least if self.row.tier in URGENT else at_least and not self.paged


@dataclass(frozen=True)
class Ratio:
    """`hits` of `total`; `percent` is None for an empty set."""

    hits: int
    total: int

    @property
    def percent(self) -> float | None:
        """The share in per cent."""
        return 100.0 * self.hits / self.total if self.total else None

    def as_dict(self) -> dict[str, Any]:
        """Plain data (`--json`)."""
        percent = self.percent
        return {"hits": self.hits, "total": self.total,
                "percent": None if percent is None else round(percent, 2)}


@dataclass(frozen=True)
class Criterion:
    """One criterion's rows handled at or above their tier."""

    name: str
    tier: str
    handled: Ratio


@dataclass(frozen=True)
class Score:
    """Every figure of one corpus run."""

    rows: int
    counts: Mapping[str, int]
    urgent_recall: Ratio
    emergency_as_emergency: Ratio
    false_alarms: Ratio
    per_tier: Mapping[str, Ratio]
    per_criterion: Sequence[Criterion]
    confusion: Mapping[str, Mapping[str, int]]
    misses: Sequence[Outcome]

    def as_dict(self, *, misses: bool = True) -> dict[str, Any]:
        """Plain data (`--json`)."""
        data: dict[str, Any] = {
            "rows": self.rows,
            "counts": dict(self.counts),
            "urgent_recall": self.urgent_recall.as_dict(),
            "emergency_as_emergency": self.emergency_as_emergency.as_dict(),
            "false_alarms": self.false_alarms.as_dict(),
            "per_tier": {label: ratio.as_dict() for label, ratio in self.per_tier.items()},
            "per_criterion": {c.name: {"tier": c.tier, **c.handled.as_dict()}
                              for c in self.per_criterion},
            "confusion": {e: dict(p) for e, p in self.confusion.items()},
            "miss_count": len(self.misses),
        }
        if misses:
            data["misses"] = [{"line": o.row.line, "text": o.row.text,
                               "expected": o.row.tier, "predicted": o.predicted,
                               "criterion": o.row.criterion, "reasons": list(o.reasons)}
                              for o in self.misses]
        return data


def _ratio(outcomes: Iterable[Outcome], hit: Callable[[Outcome], bool]) -> Ratio:
    chosen = list(outcomes)
    return Ratio(sum(1 for o in chosen if hit(o)), len(chosen))


def _severity(outcome: Outcome) -> tuple[int, int]:
    """Misses that leave an urgent patient unpaged first, then emergencies paged as same-day,
    then false alarms, then the rest; in file order within each."""
    row = outcome.row
    if row.tier in URGENT and not outcome.paged:
        kind = 0
    elif row.tier == "emergency":
        kind = 1
    elif outcome.paged and row.tier not in URGENT:
        kind = 2
    else:
        kind = 3
    return kind, row.line


def tally(outcomes: Sequence[Outcome]) -> Score:
    """The figures of a set of outcomes."""
    urgent = [o for o in outcomes if o.row.tier in URGENT]
    calm = [o for o in outcomes if o.row.tier not in URGENT]
    by_criterion: dict[str, list[Outcome]] = {}
    for outcome in outcomes:
        if outcome.row.criterion:
            by_criterion.setdefault(outcome.row.criterion, []).append(outcome)
    criteria = []
    for name, chosen in by_criterion.items():
        # A criterion belongs to one tier; should rows disagree, the most urgent one names it.
        tier = max((o.row.tier for o in chosen), key=_RANK.__getitem__)
        criteria.append(Criterion(name, tier, _ratio(chosen, lambda o: o.handled)))
    criteria.sort(key=lambda c: (-_RANK[c.tier], c.name))
    confusion = {e: dict.fromkeys(LABELS, 0) for e in LABELS}
    for outcome in outcomes:
        confusion[outcome.row.tier][outcome.predicted] += 1
    counts = Counter(o.row.tier for o in outcomes)
    return Score(
        rows=len(outcomes),
        counts={label: counts.get(label, 0) for label in LABELS},
        urgent_recall=_ratio(urgent, lambda o: o.paged),
        emergency_as_emergency=_ratio((o for o in urgent if o.row.tier == "emergency"),
                                      lambda o: o.predicted == "emergency"),
        false_alarms=_ratio(calm, lambda o: o.paged),
        per_tier={label: _ratio((o for o in outcomes if o.row.tier == label),
                                lambda o: o.right) for label in LABELS},
        per_criterion=criteria,
        confusion=confusion,
        misses=sorted((o for o in outcomes if not o.right), key=_severity),
    )


def assess(rows: Iterable[Row], engine: Callable[[str], Assessment]) -> list[Outcome]:
    """Run `engine` (text -> triage assessment) on every row."""
    outcomes = []
    for row in rows:
        assessment = engine(row.text)
        label = label_of(assessment)
        if label not in _RANK:
            raise ValueError(f"line {row.line}: triage gave an unknown label {label!r}")
        outcomes.append(Outcome(row, label, tuple(r.code for r in assessment.reasons)))
    return outcomes


def score(content: str, engine: Callable[[str], Assessment]) -> Score:
    """Parse a labelled TSV, triage every row with `engine`, and tally."""
    return tally(assess(parse_corpus(content), engine))

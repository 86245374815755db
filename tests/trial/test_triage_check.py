"""Scoring a labelled corpus: the figures are exactly what a hand count gives; a malformed file is
refused naming its line."""

from __future__ import annotations

import pytest

from trial.protocol import Protocol
from trial.triage import Report, triage
from trial.triage_scoring import (
    LABELS,
    CorpusError,
    Outcome,
    label_of,
    parse_corpus,
    score,
    tally,
)

# Ten rows; the `predicted` column is the answer the tally is given (not an engine's).
HAND = "\n".join([
    "text\ttier\tcriterion\tlang\tpredicted",
    "胸口痛\temergency\tchest_pain\tzh\temergency",
    "chest hurts\temergency\tchest_pain\ten\tsame_day",
    "抽搐了\temergency\tseizure\tzh\troutine",
    "发烧38.5\tsame_day\tfever\tzh\tsame_day",
    "fever 39\tsame_day\tfever\ten\temergency",
    "尿少\tsame_day\turine_change\tzh\tnone",
    "有点头痛\troutine\theadache\tzh\troutine",
    "a bit tired\troutine\ttiredness\ten\tsame_day",
    "好的 谢谢\tnone\tacknowledgement\tzh\tnone",
    "天气预报说明天39度\tnone\tweather\tzh\troutine",
    "",
])


def _hand() -> list[Outcome]:
    return [Outcome(row, row.columns["predicted"]) for row in parse_corpus(HAND)]


def test_the_headline_figures_are_the_hand_count() -> None:
    result = tally(_hand())
    assert result.rows == 10
    assert dict(result.counts) == {"emergency": 3, "same_day": 3, "routine": 2, "none": 2}
    # Urgent rows paged: 胸口痛, chest hurts, 发烧38.5, fever 39 (not 抽搐了, 尿少).
    assert (result.urgent_recall.hits, result.urgent_recall.total) == (4, 6)
    assert result.urgent_recall.percent == pytest.approx(200 / 3)
    assert (result.emergency_as_emergency.hits, result.emergency_as_emergency.total) == (1, 3)
    # Routine and none rows paged: only "a bit tired".
    assert (result.false_alarms.hits, result.false_alarms.total) == (1, 4)
    assert result.false_alarms.percent == 25.0


def test_recall_per_tier_is_the_label_itself() -> None:
    result = tally(_hand())
    per_tier = {label: (r.hits, r.total) for label, r in result.per_tier.items()}
    assert per_tier == {"emergency": (1, 3), "same_day": (1, 3), "routine": (1, 2),
                        "none": (1, 2)}


def test_per_criterion_counts_at_or_above_and_calm_ones_unpaged() -> None:
    result = tally(_hand())
    figures = {c.name: (c.tier, c.handled.hits, c.handled.total) for c in result.per_criterion}
    assert figures == {
        "chest_pain": ("emergency", 1, 2),  # same-day is below emergency
        "seizure": ("emergency", 0, 1),
        "fever": ("same_day", 2, 2),  # over-triage to emergency still pages
        "urine_change": ("same_day", 0, 1),
        "headache": ("routine", 1, 1),
        "tiredness": ("routine", 0, 1),  # a false alarm is not handled
        "acknowledgement": ("none", 1, 1),
        "weather": ("none", 1, 1),  # recorded as routine: not paged
    }
    # Most urgent tier first, then by name.
    assert [c.name for c in result.per_criterion] == [
        "chest_pain", "seizure", "fever", "urine_change", "headache", "tiredness",
        "acknowledgement", "weather"]


def test_confusion_matrix_and_misses_most_dangerous_first() -> None:
    result = tally(_hand())
    assert result.confusion == {
        "emergency": {"emergency": 1, "same_day": 1, "routine": 1, "none": 0},
        "same_day": {"emergency": 1, "same_day": 1, "routine": 0, "none": 1},
        "routine": {"emergency": 0, "same_day": 1, "routine": 1, "none": 0},
        "none": {"emergency": 0, "same_day": 0, "routine": 1, "none": 1},
    }
    assert sum(sum(row.values()) for row in result.confusion.values()) == result.rows
    # Unpaged urgent (lines 4, 7), emergency as same-day (3), false alarm (9), the rest (6, 11).
    assert [m.row.line for m in result.misses] == [4, 7, 3, 9, 6, 11]
    data = result.as_dict()
    assert data["miss_count"] == 6
    assert data["urgent_recall"] == {"hits": 4, "total": 6, "percent": 66.67}
    assert data["misses"][0] == {"line": 4, "text": "抽搐了", "expected": "emergency",
                                 "predicted": "routine", "criterion": "seizure", "reasons": []}
    assert "misses" not in result.as_dict(misses=False)


def test_an_empty_tier_has_no_percentage() -> None:
    result = tally([o for o in _hand() if o.row.tier != "none"])
    assert result.per_tier["none"].total == 0
    assert result.per_tier["none"].percent is None
    assert result.as_dict()["per_tier"]["none"] == {"hits": 0, "total": 0, "percent": None}


def test_the_real_engine_on_plain_texts(protocol: Protocol) -> None:
    # Texts whose tier no engine may doubt; two rows deliberately mislabelled.
    content = ("text\ttier\n胸痛得厉害，喘不上气\temergency\n发烧39度\tsame_day\n"
               "有点头痛\troutine\n好的 谢谢\tnone\n有点头痛\temergency\n发烧39度\troutine\n")
    result = score(content, lambda text: triage(Report(text), protocol.triage))
    assert (result.urgent_recall.hits, result.urgent_recall.total) == (2, 3)
    assert (result.emergency_as_emergency.hits, result.emergency_as_emergency.total) == (1, 2)
    assert (result.false_alarms.hits, result.false_alarms.total) == (1, 3)
    assert [(m.row.line, m.predicted) for m in result.misses] == [(6, "routine"),
                                                                 (7, "same_day")]
    assert result.misses[0].reasons  # the headache fired a routine rule


def test_label_is_none_for_a_routine_text_that_fired_nothing(protocol: Protocol) -> None:
    assert label_of(triage(Report("好的 谢谢"), protocol.triage)) == "none"
    assert label_of(triage(Report("发烧39度"), protocol.triage)) == "same_day"


def test_parsing_keeps_extra_columns_and_skips_blank_lines() -> None:
    rows = parse_corpus("\ufefftier\tnote\ttext\r\nroutine\tx\t有点头痛\r\n\r\nnone\t\tok\r\n")
    assert [(r.line, r.text, r.tier, r.criterion) for r in rows] == [
        (2, "有点头痛", "routine", ""), (4, "ok", "none", "")]
    assert rows[0].columns["note"] == "x"
    assert set(LABELS) == {"emergency", "same_day", "routine", "none"}


@pytest.mark.parametrize(("content", "line", "problem"), [
    ("text\tlevel\nok\tnone\n", 1, "missing tier"),
    ("words\ttier\nok\tnone\n", 1, "missing text"),
    ("text\ttier\ttier\nok\tnone\tnone\n", 1, "column named twice: tier"),
    ("text\ttier\nok\tnone\n胸痛\turgent\n", 3, "unknown tier 'urgent'"),
    ("text\ttier\nok\tnone\n\n胸痛\temergency\textra\n", 4, "3 tab-separated fields"),
    ("text\ttier\nok\n", 2, "1 tab-separated fields"),
    ("text\ttier\n \tnone\n", 2, "empty text"),
    ("text\ttier\n\n", 1, "no labelled rows"),
])
def test_a_malformed_file_is_refused_with_its_line(content: str, line: int,
                                                   problem: str) -> None:
    with pytest.raises(CorpusError) as caught:
        parse_corpus(content)
    assert caught.value.line == line
    assert problem in str(caught.value)
    assert str(caught.value).startswith(f"line {line}: ")

"""The labelled triage corpus (tests/data/triage/): its shape and coverage (issue 14, item 1).

The figures the engine reaches on it are printed by `bench/triage.py` and `engage triage check`;
this file checks only that the corpus is what it claims to be, so a bad edit cannot hollow it out.
"""

from __future__ import annotations

import csv
import re
from collections import Counter

import pytest

from tests import DATA as TEST_DATA
from tests import ROOT as PROJECT_ROOT

DATA = TEST_DATA / "triage"
CRITERIA = PROJECT_ROOT / "docs" / "triage-criteria.md"
TIERS = ("emergency", "same_day", "routine", "none")
LANGS = {"zh", "zh_hant", "en", "mixed"}


def _rows(name: str) -> list[dict[str, str]]:
    with (DATA / name).open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))


def _criteria() -> dict[str, str]:
    """Urgent criterion name -> tier, read from the shared list in docs/triage-criteria.md."""
    tier, names = "", {}
    for line in CRITERIA.read_text(encoding="utf-8").splitlines():
        heading = re.match(r"## (\w+)", line)
        if heading:
            tier = heading.group(1)
            continue
        if tier in ("emergency", "same_day"):
            item = re.match(r"- (\w+)\s", line)
            if item:
                names[item.group(1)] = tier
    return names


@pytest.fixture(scope="module")
def rows() -> dict[str, list[dict[str, str]]]:
    return {"heldout": _rows("heldout.tsv"), "corpus": _rows("corpus.tsv")}


def test_every_row_is_well_formed(rows: dict[str, list[dict[str, str]]]) -> None:
    criteria = _criteria()
    for name, table in rows.items():
        for number, row in enumerate(table, start=2):
            where = f"{name}.tsv line {number}"
            assert None not in row, where  # more fields than the header
            assert all(v is not None for v in row.values()), where  # fewer
            assert row["text"].strip(), where
            assert row["tier"] in TIERS, where
            assert row["lang"] in LANGS, where
            if row["tier"] in ("emergency", "same_day"):
                assert criteria.get(row["criterion"]) == row["tier"], where


def test_no_text_twice(rows: dict[str, list[dict[str, str]]]) -> None:
    texts = Counter(" ".join(r["text"].split()).casefold()
                    for table in rows.values() for r in table)
    assert [t for t, n in texts.items() if n > 1] == []


def test_size_and_held_out_share(rows: dict[str, list[dict[str, str]]]) -> None:
    total = len(rows["heldout"]) + len(rows["corpus"])
    assert total >= 600
    assert len(rows["heldout"]) >= 120
    quiet = sum(r["tier"] in ("routine", "none") for t in rows.values() for r in t)
    assert quiet / total >= 0.25  # enough to measure false alarms


def test_every_urgent_criterion_is_written_many_ways(
        rows: dict[str, list[dict[str, str]]]) -> None:
    """At least 10 ways in Chinese and 6 in English, each also in the held-out part."""
    urgent = {n for n, t in _criteria().items() if t in ("emergency", "same_day")}
    everything = [r for table in rows.values() for r in table]
    chinese = Counter(r["criterion"] for r in everything if r["lang"] != "en")
    english = Counter(r["criterion"] for r in everything if r["lang"] == "en")
    held = Counter(r["criterion"] for r in rows["heldout"])
    assert len(urgent) >= 30
    for criterion in sorted(urgent):
        assert chinese[criterion] >= 10, criterion
        assert english[criterion] >= 6, criterion
        assert held[criterion] >= 2, criterion


def test_the_ways_people_write_are_all_there(rows: dict[str, list[dict[str, str]]]) -> None:
    styles = Counter(r["style"] for table in rows.values() for r in table)
    for style in ("paraphrase", "composition", "traditional", "homophone_typo", "misspelling",
                  "mixed", "family", "negated", "resolved", "question", "weather",
                  "not_temperature", "acknowledgement"):
        assert styles[style] >= 8, style

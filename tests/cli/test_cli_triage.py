"""`engage triage explain` and `engage triage check` through the CLI entry, text and `--json`;
a malformed corpus is one error line and exit 2; a poor score still exits 0 (a report)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests import ROOT as PROJECT_ROOT
from tests.cli.support import run_cli

ROOT = PROJECT_ROOT
CORPUS = ("text\ttier\tcriterion\n胸痛得厉害，喘不上气\temergency\tchest_pain\n"
          "发烧39度\tsame_day\tfever\n有点头痛\troutine\theadache\n"
          "好的 谢谢\tnone\tacknowledgement\n有点头痛\temergency\tseizure\n")


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ENGAGE_PROTOCOL", raising=False)
    monkeypatch.setenv("ENGAGE_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'unused.db'}")


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    path = tmp_path / "corpus.tsv"
    path.write_text(CORPUS, encoding="utf-8")
    return path


def test_explain_prints_tier_rules_and_temperature(capsys: pytest.CaptureFixture[str]) -> None:
    outcome = run_cli(capsys, "triage", "explain", "我爸胸痛得厉害，体温：38.7，没有咳嗽")
    assert outcome.status == 0, outcome.err
    lines = outcome.out.splitlines()
    assert lines[0] == "tier: emergency"
    assert "rules fired:" in lines
    assert "temperature: 38.7 C" in lines
    assert "  '38.7' -> 38.7 C" in lines
    for heading in ("concepts:", "negated:", "near misses:", "reporter:", "possible SAE: no"):
        assert any(line.startswith(heading) for line in lines), heading
    assert not (ROOT / "unused.db").exists()


def test_explain_json_has_every_part(capsys: pytest.CaptureFixture[str]) -> None:
    outcome = run_cli(capsys, "triage", "explain", "发烧39度", "--json")
    assert outcome.status == 0, outcome.err
    data = json.loads(outcome.out)
    assert set(data) == {"text", "tier", "label", "reasons", "concepts", "temperature_c",
                         "readings", "negated", "near_misses", "reporter", "possible_sae"}
    assert (data["text"], data["tier"], data["label"]) == ("发烧39度", "same_day", "same_day")
    assert data["temperature_c"] == 39.0
    assert [r["celsius"] for r in data["readings"]] == [39.0]
    assert all(set(r) == {"rule", "tier", "matched"} for r in data["reasons"])
    assert "same_day" in {r["tier"] for r in data["reasons"]}
    for concept in data["concepts"]:
        assert {"name", "start", "end", "text", "how", "negated", "hypothetical",
                "resolved"} <= set(concept)
        assert data["text"][concept["start"]:concept["end"]] or concept["text"]


def test_explain_of_an_acknowledgement_is_labelled_none(
        capsys: pytest.CaptureFixture[str]) -> None:
    data = json.loads(run_cli(capsys, "triage", "explain", "好的 谢谢", "--json").out)
    assert (data["tier"], data["label"], data["reasons"]) == ("routine", "none", [])


def test_explain_refuses_an_empty_text(capsys: pytest.CaptureFixture[str]) -> None:
    outcome = run_cli(capsys, "triage", "explain", "  ")
    assert outcome.status == 2
    assert outcome.err == "error: TEXT: nothing to triage\n"


def test_check_prints_percentages_and_the_matrix(corpus: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    outcome = run_cli(capsys, "triage", "check", str(corpus))
    assert outcome.status == 0, outcome.err  # a miss is reported, not a failure
    out = outcome.out
    assert out.startswith(f"{corpus}: 5 rows (emergency 2, same_day 1, routine 1, none 1)\n")
    assert "urgent recall (emergency and same-day paged):   66.7 %  (2/3)" in out
    assert "emergency paged as emergency:                   50.0 %  (1/2)" in out
    assert "false alarms (routine and none paged):           0.0 %  (0/2)" in out
    assert "  emergency  50.0 %  (1/2)" in out
    assert "  emergency  seizure            0.0 %  (0/1)" in out
    assert "  none       acknowledgement  100.0 %  (1/1)" in out
    matrix = out.split("confusion (rows: expected, columns: predicted):\n", 1)[1].splitlines()
    assert matrix[0].split() == ["emergency", "same_day", "routine", "none"]
    assert matrix[1].split() == ["emergency", "1", "0", "1", "0"]
    assert matrix[4].split() == ["none", "0", "0", "0", "1"]
    assert out.rstrip().endswith("misses: 1 (--misses lists them)")


def test_check_lists_misses(corpus: Path, capsys: pytest.CaptureFixture[str]) -> None:
    outcome = run_cli(capsys, "triage", "check", str(corpus), "--misses")
    assert outcome.status == 0, outcome.err
    tail = outcome.out.split("misses: 1\n", 1)[1].splitlines()
    assert len(tail) == 1
    assert tail[0].startswith("  line 6: emergency seizure -> routine (")
    assert tail[0].endswith("): 有点头痛")


def test_check_json(corpus: Path, capsys: pytest.CaptureFixture[str]) -> None:
    outcome = run_cli(capsys, "triage", "check", str(corpus), "--json", "--misses")
    assert outcome.status == 0, outcome.err
    data = json.loads(outcome.out)
    assert data["file"] == str(corpus)
    assert data["rows"] == 5
    assert data["urgent_recall"] == {"hits": 2, "total": 3, "percent": 66.67}
    assert data["emergency_as_emergency"] == {"hits": 1, "total": 2, "percent": 50.0}
    assert data["false_alarms"] == {"hits": 0, "total": 2, "percent": 0.0}
    assert data["per_tier"]["none"] == {"hits": 1, "total": 1, "percent": 100.0}
    assert data["per_criterion"]["seizure"] == {"tier": "emergency", "hits": 0, "total": 1,
                                                "percent": 0.0}
    assert data["confusion"]["emergency"] == {"emergency": 1, "same_day": 0, "routine": 1,
                                              "none": 0}
    assert [(m["line"], m["predicted"]) for m in data["misses"]] == [(6, "routine")]
    assert "misses" not in json.loads(
        run_cli(capsys, "triage", "check", str(corpus), "--json").out)


def test_a_malformed_corpus_is_one_line_and_exit_2(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.tsv"
    bad.write_text("text\ttier\n胸痛\temergency\n头痛\tsoon\n", encoding="utf-8")
    outcome = run_cli(capsys, "triage", "check", str(bad))
    assert outcome.status == 2
    assert outcome.out == ""
    assert outcome.err == (f"error: {bad}: line 3: unknown tier 'soon' (one of emergency, "
                           "same_day, routine, none)\n")


def test_a_missing_corpus_is_one_line_and_exit_2(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    outcome = run_cli(capsys, "triage", "check", str(tmp_path / "none.tsv"))
    assert outcome.status == 2
    assert outcome.err.startswith(f"error: cannot read {tmp_path / 'none.tsv'}: ")
    assert outcome.err.count("\n") == 1


def test_python_m_check_of_a_malformed_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.tsv"
    bad.write_text("text\nhello\n", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENGAGE_")}
    env["PYTHONPATH"] = str(ROOT)
    result = subprocess.run([sys.executable, "-m", "engage.cli", "triage", "check", str(bad)],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr == (f"error: {bad}: line 1: the header must name the columns `text`, "
                             "`tier` (missing tier)\n")

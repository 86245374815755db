"""Triage on the labelled corpus: how many urgent reports page staff, how many emergencies are
paged as emergencies, how many calm texts page anyone (corpus and held-out part apart); the time
per report against a bare keyword scan of the same texts; the engine's memory.

    .venv/bin/python bench/triage.py [--passes 5] [--misses]

Figures come from `trial.triage_scoring` (as `engage triage check` prints them) on
tests/data/triage/corpus.tsv and, reported apart, tests/data/triage/heldout.tsv. Time: every
text of both files, `--passes` times, each report timed alone with `perf_counter_ns`; baselines
on the same texts in the same run: `trial.temperature.readings()` and `str.casefold` + a
substring scan for every surface word of the lexicons' symptom, body-part and finding concepts
(the naive keyword matcher). `--misses` lists the corpus's misses only: the held-out file's texts
are never printed (it is not to be tuned on). Memory: in a fresh
interpreter, the tracemalloc peak of importing trial.triage, loading the protocol, building the
engine and triaging every text once; RSS growth measured in another fresh interpreter without
tracemalloc, against one that only imports and loads the protocol.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import common

from trial.protocol import load_protocol
from trial.temperature import readings
from trial.triage import Assessment, Report, triage
from trial.triage.lexicon import SYMPTOM_GROUPS, bundled
from trial.triage_scoring import LABELS, CorpusError, Score, assess, parse_corpus, tally

DATA = common.ROOT / "tests" / "data" / "triage"
SETS = (("corpus", DATA / "corpus.tsv"), ("held-out", DATA / "heldout.tsv"))
URGENT_RECALL_GOAL = 100.0
EMERGENCY_GOAL = 98.0
FALSE_ALARM_GOAL = 5.0
MEDIAN_GOAL_MS = 1.0
P99_GOAL_MS = 5.0
MEMORY_GOAL_MB = 30.0

# Run in a fresh interpreter: argv[1] "trace" or "rss", argv[2] "engine" or "protocol"; the
# texts come as JSON on stdin, read before anything is measured, with nothing but the stdlib.
PROBE = r"""
import json, sys, time, tracemalloc

def rss_kb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0

mode, what = sys.argv[1], sys.argv[2]
texts = json.load(sys.stdin)
before = rss_kb()
if mode == "trace":
    tracemalloc.start()
started = time.perf_counter()
from trial.protocol import load_protocol
rules = load_protocol().triage
built = None
if what == "engine":
    from trial.triage import Report, triage
    triage(Report("build"), rules)
    built = time.perf_counter() - started
    for text in texts:
        triage(Report(text), rules)
peak = tracemalloc.get_traced_memory()[1] if mode == "trace" else None
print(json.dumps({"peak": peak, "rss_before_kb": before, "rss_after_kb": rss_kb(),
                  "built_s": built, "texts": len(texts)}))
"""


def _probe(mode: str, what: str, texts: Sequence[str]) -> dict[str, Any]:
    result = subprocess.run([common.PYTHON, "-c", PROBE, mode, what], input=json.dumps(texts),
                            cwd=common.ROOT, capture_output=True, text=True, timeout=240,
                            env={"PYTHONPATH": str(common.ROOT), "PATH": "/usr/bin:/bin"})
    if result.returncode != 0:
        raise RuntimeError(f"memory probe failed: {result.stderr.strip()[-500:]}")
    return dict(json.loads(result.stdout))


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} %"


def report_set(name: str, path: Path, engine: Callable[[str], Assessment], *,
               misses: bool) -> list[str]:
    """Print one file's figures and goals; its texts."""
    shown = path.relative_to(common.ROOT) if path.is_relative_to(common.ROOT) else path
    print(f"-- {name}: {shown}")
    if not path.is_file():
        print("   (not there yet: skipped)")
        return []
    try:
        rows = parse_corpus(path.read_text(encoding="utf-8"))
    except CorpusError as exc:
        print(f"   (malformed: {exc}: skipped)")
        return []
    result = tally(assess(rows, engine))
    counts = ", ".join(f"{label} {n}" for label, n in result.counts.items())
    print(f"   {result.rows} texts ({counts})")
    _goals(result)
    print("   recall per tier (label as expected): " + ", ".join(
        f"{label} {_pct(r.percent)} ({r.hits}/{r.total})" for label, r in result.per_tier.items()))
    if result.per_criterion:
        print("   per criterion (at or above its tier; routine and none: not paged), "
              "'<' below 100 %:")
        width = max(len(c.name) for c in result.per_criterion)
        for c in result.per_criterion:
            mark = "<" if c.handled.hits < c.handled.total else " "
            print(f"    {mark} {c.tier:<10} {c.name:<{width}} {_pct(c.handled.percent):>8} "
                  f"({c.handled.hits}/{c.handled.total})")
    print("   confusion (rows expected, columns predicted): " + "  ".join(
        f"{e}: " + "/".join(str(result.confusion[e][p]) for p in LABELS) for e in LABELS))
    print(f"   misses: {len(result.misses)}")
    if misses:
        for miss in result.misses:
            print(f"     line {miss.row.line}: {miss.row.tier} {miss.row.criterion} -> "
                  f"{miss.predicted} ({', '.join(miss.reasons) or 'no rule'}): {miss.row.text}")
    return [row.text for row in rows]


def _goals(result: Score) -> None:
    urgent, emergency, alarms = (result.urgent_recall, result.emergency_as_emergency,
                                 result.false_alarms)
    common.goal(f"urgent recall {URGENT_RECALL_GOAL:g} %",
                urgent.percent is not None and urgent.percent >= URGENT_RECALL_GOAL,
                f"{_pct(urgent.percent)} ({urgent.hits}/{urgent.total} paged)")
    common.goal(f"emergency as emergency >= {EMERGENCY_GOAL:g} %",
                emergency.percent is not None and emergency.percent >= EMERGENCY_GOAL,
                f"{_pct(emergency.percent)} ({emergency.hits}/{emergency.total})")
    common.goal(f"false alarms among routine and none <= {FALSE_ALARM_GOAL:g} %",
                alarms.percent is not None and alarms.percent <= FALSE_ALARM_GOAL,
                f"{_pct(alarms.percent)} ({alarms.hits}/{alarms.total} paged)")


def _times(texts: Sequence[str], passes: int, work: Callable[[str], object]) -> list[float]:
    spent = []
    clock = time.perf_counter_ns
    for _ in range(passes):
        for text in texts:
            started = clock()
            work(text)
            spent.append((clock() - started) / 1e6)
    return spent


def timing(texts: Sequence[str], passes: int, engine: Callable[[str], Assessment]) -> None:
    """Time per report, against the two baselines, same texts, same run."""
    lexicon = bundled()
    words = list(dict.fromkeys(form.casefold() for name in lexicon.names(*SYMPTOM_GROUPS)
                               for form in lexicon.forms(name)))

    def scan(text: str) -> bool:
        folded = text.casefold()
        return any(word in folded for word in words)

    print(f"-- time per report: {len(texts)} texts x {passes} passes")
    engine_ms = _times(texts, passes, engine)
    reading_ms = _times(texts, passes, readings)
    scan_ms = _times(texts, passes, scan)
    median, p99 = statistics.median(engine_ms), common.percentile(engine_ms, 99)
    for name, spent in (("triage", engine_ms), ("baseline readings()", reading_ms),
                        (f"baseline casefold + scan of {len(words)} words", scan_ms)):
        print(f"   {name}: median {statistics.median(spent):.3f} ms, p99 "
              f"{common.percentile(spent, 99):.3f} ms, max {max(spent):.3f} ms")
    print(f"   ratio triage / readings(): median "
          f"{median / statistics.median(reading_ms):.1f}, p99 "
          f"{p99 / common.percentile(reading_ms, 99):.1f}; triage / scan: median "
          f"{median / statistics.median(scan_ms):.1f}")
    common.goal(f"median < {MEDIAN_GOAL_MS:g} ms", median < MEDIAN_GOAL_MS, f"{median:.3f} ms")
    common.goal(f"p99 < {P99_GOAL_MS:g} ms", p99 < P99_GOAL_MS, f"{p99:.3f} ms")


def memory(texts: Sequence[str]) -> None:
    """The engine's memory, each figure from a fresh interpreter."""
    print("-- memory (fresh interpreters)")
    traced = _probe("trace", "engine", texts)
    engine = _probe("rss", "engine", texts)
    bare = _probe("rss", "protocol", texts)
    peak = traced["peak"] / 2**20
    grown = (engine["rss_after_kb"] - engine["rss_before_kb"]) / 1024
    baseline = (bare["rss_after_kb"] - bare["rss_before_kb"]) / 1024
    print(f"   import + protocol + first report: {engine['built_s'] * 1000:.0f} ms; "
          f"then {engine['texts']} texts triaged once")
    print(f"   RSS growth: {grown:.1f} MB; baseline (import trial.protocol, load it): "
          f"{baseline:.1f} MB; the engine's own: {grown - baseline:.1f} MB")
    common.goal(f"tracemalloc peak < {MEMORY_GOAL_MB:g} MB (import, build, triage all once)",
                peak < MEMORY_GOAL_MB, f"{peak:.1f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--passes", type=int, default=5, help="timed passes over the texts")
    parser.add_argument("--misses", action="store_true",
                        help="list every corpus text labelled wrong (never the held-out ones)")
    parser.add_argument("--corpus", type=Path, default=SETS[0][1], help="the corpus TSV")
    parser.add_argument("--heldout", type=Path, default=SETS[1][1], help="the held-out TSV")
    args = parser.parse_args()
    common.header("triage: the labelled corpus, time per report, memory")
    rules = load_protocol().triage

    def engine(text: str) -> Assessment:
        return triage(Report(text), rules)

    texts = report_set("corpus", args.corpus, engine, misses=args.misses)
    texts += report_set("held-out", args.heldout, engine, misses=False)
    if not texts:
        print("-- no corpus yet: time and memory skipped")
        return
    timing(texts, args.passes, engine)
    memory(texts)


if __name__ == "__main__":
    sys.exit(main())

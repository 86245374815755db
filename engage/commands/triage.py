"""`engage triage explain TEXT` and `engage triage check FILE`: why a text gets its tier, and
how the engine does on a labelled corpus (a report, not a gate: exit 0 whatever the figures)."""

from __future__ import annotations

import argparse
import dataclasses
import enum
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engage.commands._args import command, command_group
from engage.commands.support import CommandError, emit
from engage.config import Settings
from trial.protocol import load_protocol
from trial.triage import Report, triage
from trial.triage_scoring import LABELS, CorpusError, Ratio, Score, label_of, score


def register(sub: argparse._SubParsersAction) -> None:
    group = command_group(sub, "triage", help="explain a triage, score a labelled corpus")
    command(group, "explain", _explain, positionals=("TEXT",),
            help="the tier of one text, with every rule, concept and reading")
    check = command(group, "check", _check,
                    help="recall per tier and criterion on a labelled TSV (text<TAB>tier...)")
    check.add_argument("file", metavar="FILE", type=Path)
    check.add_argument("--misses", action="store_true", help="list every text labelled wrong")


def _engine(settings: Settings) -> Callable[[str], Any]:
    rules = load_protocol(settings.protocol).triage
    return lambda text: triage(Report(text), rules)


# -- explain ---------------------------------------------------------------------------------

def _plain(value: Any) -> Any:
    """An engine value as JSON data, whatever its shape (dataclass, enum, tuple)."""
    if isinstance(value, enum.Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def explanation(text: str, assessment: Any) -> dict[str, Any]:
    """What the engine found in one text, as plain data (`--json`)."""
    return {
        "text": text,
        "tier": assessment.tier.value,
        "label": label_of(assessment),
        "reasons": [{"rule": r.code, "tier": r.tier.value, "matched": list(r.matched)}
                    for r in assessment.reasons],
        "concepts": [{"name": c.name, "start": c.start, "end": c.end, "text": c.text,
                      "how": _plain(c.how), "negated": bool(c.negated),
                      "hypothetical": bool(c.hypothetical), "resolved": bool(c.resolved)}
                     for c in getattr(assessment, "concepts", ())],
        "temperature_c": assessment.temperature_c,
        "readings": [{"celsius": r.celsius, "text": r.text} for r in assessment.readings],
        "negated": list(assessment.negated),
        "near_misses": [str(n) for n in getattr(assessment, "near_misses", ())],
        "reporter": _plain(getattr(assessment, "reporter", None)),
        "possible_sae": bool(assessment.possible_sae),
    }


def _flags(concept: dict[str, Any]) -> str:
    marks = [name for name in ("negated", "hypothetical", "resolved") if concept[name]]
    return f"  [{', '.join(marks)}]" if marks else ""


def describe_explanation(data: dict[str, Any]) -> str:
    """One text's triage as a research nurse reads it."""
    lines = [f"tier: {data['tier']}" + (f" (label: {data['label']})"
                                        if data["label"] != data["tier"] else "")]
    lines.append("rules fired:" if data["reasons"] else "rules fired: none")
    for reason in data["reasons"]:
        matched = ", ".join(reason["matched"]) or "-"
        lines.append(f"  {reason['rule']} ({reason['tier']}): {matched}")
    lines.append("concepts:" if data["concepts"] else "concepts: none")
    for concept in data["concepts"]:
        span = f"{concept['start']}-{concept['end']}"
        lines.append(f"  {span:<8} {concept['text']!r:<16} {concept['name']} "
                     f"(by {concept['how']}){_flags(concept)}")
    temperature = data["temperature_c"]
    lines.append(f"temperature: {temperature:.1f} C" if temperature is not None
                 else "temperature: none read")
    for reading in data["readings"]:
        lines.append(f"  {reading['text']!r} -> {reading['celsius']:.1f} C")
    lines.append(f"negated: {', '.join(data['negated']) or 'none'}")
    lines.append(f"near misses: {', '.join(data['near_misses']) or 'none'}")
    lines.append(f"reporter: {data['reporter'] if data['reporter'] is not None else 'unknown'}")
    lines.append(f"possible SAE: {'yes' if data['possible_sae'] else 'no'}")
    return "\n".join(lines)


async def _explain(args: argparse.Namespace, settings: Settings) -> int:
    if not args.text.strip():
        raise CommandError("TEXT: nothing to triage")
    data = explanation(args.text, _engine(settings)(args.text))
    emit(data, args.json, describe_explanation(data))
    return 0


# -- check -----------------------------------------------------------------------------------

def percent(ratio: Ratio) -> str:
    """`97.5 %  (351/360)`, or `n/a` for an empty set."""
    share = ratio.percent
    figure = "n/a" if share is None else f"{share:.1f} %"
    return f"{figure:>7}  ({ratio.hits}/{ratio.total})"


def describe_score(source: str, result: Score, *, misses: bool) -> str:
    """A corpus run as its reader needs it: paging first, then the detail."""
    counts = ", ".join(f"{label} {n}" for label, n in result.counts.items())
    lines = [
        f"{source}: {result.rows} rows ({counts})",
        f"urgent recall (emergency and same-day paged):  {percent(result.urgent_recall)}",
        f"emergency paged as emergency:                  "
        f"{percent(result.emergency_as_emergency)}",
        f"false alarms (routine and none paged):         {percent(result.false_alarms)}",
        "recall per tier (label as expected):",
    ]
    lines += [f"  {label:<10}{percent(ratio)}" for label, ratio in result.per_tier.items()]
    if result.per_criterion:
        lines.append("per criterion (at or above its tier; routine and none: not paged):")
        width = max(len(c.name) for c in result.per_criterion)
        lines += [f"  {c.tier:<11}{c.name:<{width}}  {percent(c.handled)}"
                  for c in result.per_criterion]
    lines.append("confusion (rows: expected, columns: predicted):")
    lines.append(f"  {'':<10}" + "".join(f"{label:>10}" for label in LABELS))
    for expected in LABELS:
        lines.append(f"  {expected:<10}" + "".join(
            f"{result.confusion[expected][predicted]:>10}" for predicted in LABELS))
    if not misses:
        lines.append(f"misses: {len(result.misses)}"
                     + (" (--misses lists them)" if result.misses else ""))
        return "\n".join(lines)
    lines.append(f"misses: {len(result.misses)}")
    for miss in result.misses:
        criterion = f" {miss.row.criterion}" if miss.row.criterion else ""
        reasons = ", ".join(miss.reasons) or "no rule"
        lines.append(f"  line {miss.row.line}: {miss.row.tier}{criterion} -> {miss.predicted} "
                     f"({reasons}): {miss.row.text}")
    return "\n".join(lines)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise CommandError(f"{path}: not UTF-8 text") from None


async def _check(args: argparse.Namespace, settings: Settings) -> int:
    content = _read(args.file)
    try:
        result = score(content, _engine(settings))
    except CorpusError as exc:
        raise CommandError(f"{args.file}: {exc}") from None
    data = {"file": str(args.file), **result.as_dict(misses=args.misses)}
    emit(data, args.json, describe_score(str(args.file), result, misses=args.misses))
    return 0

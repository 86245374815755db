"""The triage vocabulary: per-language TOML files mapping each concept to its surface forms.

The words are data a research nurse reviews (trial/lexicons/zh.toml, en.toml), not code. Each file
has one table per group (symptom, body, finding, qualifier, medicine, context, exclusion); each key
is a concept name shared by both languages, each value the ways patients write it. The rules
(trial/criteria.py) combine concept names; nothing here knows a tier.
"""

from __future__ import annotations

import functools
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources

LANGUAGES = ("zh", "en")
# symptom: names a symptom on its own; body / finding: halves a rule composes; qualifier: at rest,
# one side, severe...; medicine: medicines and doses; context: negation, hypothetical, resolution,
# reporter, clause breaks; exclusion: longer words that contain a concept's form but mean something
# else (手机 is not a hand, 血压 is not bleeding), whose occurrences swallow the shorter ones;
# spelling: common English words never read as a misspelling of a lexicon word.
GROUPS = ("symptom", "body", "finding", "qualifier", "medicine", "context", "exclusion",
          "spelling")
# Groups whose live occurrences mean the text names a symptom.
SYMPTOM_GROUPS = frozenset({"symptom", "body", "finding"})


class LexiconError(ValueError):
    """A lexicon file that cannot be used."""


@dataclass(frozen=True)
class Entry:
    """One concept: its name, group, and every surface form in every language."""

    name: str
    group: str
    forms: tuple[str, ...]


@dataclass(frozen=True)
class Lexicon:
    """Every concept of every language file."""

    entries: dict[str, Entry]

    def forms(self, name: str) -> tuple[str, ...]:
        """The surface forms of one concept (empty when unknown)."""
        entry = self.entries.get(name)
        return entry.forms if entry else ()

    def group(self, name: str) -> str:
        """The group a concept belongs to."""
        return self.entries[name].group

    def names(self, *groups: str) -> list[str]:
        """Concept names of the given groups."""
        return [e.name for e in self.entries.values() if e.group in groups]


def parse(files: Iterable[tuple[str, str]]) -> Lexicon:
    """Lexicon from (source, TOML text) pairs; a concept keeps one group across files."""
    merged: dict[str, tuple[str, list[str]]] = {}
    for source, text in files:
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise LexiconError(f"{source}: not valid TOML: {exc}") from exc
        for group, table in raw.items():
            if group not in GROUPS or not isinstance(table, dict):
                raise LexiconError(f"{source}: {group}: unknown group")
            for name, forms in table.items():
                if not isinstance(forms, list) or not all(isinstance(f, str) for f in forms):
                    raise LexiconError(f"{source}: {group}.{name}: forms must be strings")
                known = merged.setdefault(name, (group, []))
                if known[0] != group:
                    raise LexiconError(f"{source}: {group}.{name}: already in {known[0]}")
                known[1].extend(f.strip() for f in forms if f.strip())
    return Lexicon({name: Entry(name, group, tuple(dict.fromkeys(forms)))
                    for name, (group, forms) in merged.items()})


@functools.cache
def bundled() -> Lexicon:
    """The lexicons shipped with the package (read once)."""
    folder = resources.files("trial") / "lexicons"
    return parse((f"{lang}.toml", (folder / f"{lang}.toml").read_text(encoding="utf-8"))
                 for lang in LANGUAGES)

"""Every occurrence of every lexicon concept in a report, with its span in the original text.

The text is cut into units: a Chinese character, an English word (stemmed), a number, a
punctuation mark. Lexicon forms are cut the same way once, at load, so Chinese and English, and
a mix of both in one text ("我的 face 肿得厉害"), are matched by one loop. Besides exact matches:

- Chinese homophones: IME users pick the wrong character of the right sound (呼息困难, 胸通,
  发少, 抽出了). A window whose toneless pinyin (the typed character's common reading) is one
  of a form's readings, differing in at most one character (two in forms of four or more; a
  two-character slip shares a meaningful character, not a particle: 少了 is not 烧了), is that
  form. Only symptoms, body parts and findings of 2+ characters, never a window that is itself
  a lexicon form or crosses one, never inside an exclusion (抽出时间 is not a seizure).
  Pinyin comes from pypinyin's single-character table only (its phrase tables weigh ~50 MB).
- English misspellings: a word of 5+ letters that is no lexicon word and no common English word
  is read as the nearest lexicon word within one edit (two for 8+ letters; a swap of neighbours
  is one edit), by rapidfuzz. A four-letter word only for a swap of neighbours (pian) or one
  inner letter left out (fevr, cogh), and only when a single lexicon word fits.
- An occurrence inside a longer one is dropped: 痛 inside 胸口痛, 便 inside 小便, 手 inside 手机.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from rapidfuzz import process
from rapidfuzz.distance import OSA, Indel

from trial.triage.lexicon import Lexicon
from trial.triage.normalise import Normalised, is_cjk, normalise

_UNIT = re.compile(
    r"(?P<word>[a-z]+(?:['&\-][a-z]+)*)"
    r"|(?P<num>\d+(?:[.,]\d+)?)"
    r"|(?P<cjk>[\u3400-\u9fff\uf900-\ufaff])"
    r"|(?P<other>\n|[^\s])")

HOW = ("exact", "traditional", "homophone", "misspelling")
# Function characters: a two-character window sharing only one of these with a form is no slip.
_PARTICLES = frozenset("了的得着过吗呢吧啊是有不没也都很就在个一")


@dataclass(frozen=True)
class Unit:
    """One unit of normalised text: its matching key and its span there."""

    key: str
    start: int
    end: int
    kind: str  # word, num, cjk, other


@dataclass(frozen=True)
class Occurrence:
    """A concept found in the units [first, last) of a text."""

    name: str
    group: str
    first: int
    last: int
    how: str


def stem(word: str) -> str:
    """Enough English morphology to match meaning: coughing, coughs, coughed -> cough."""
    if len(word) <= 3 or not word.isalpha():
        return word.removesuffix("'s")
    word = word.removesuffix("'s")
    stripped = False
    for suffix, replacement, keep in (("ies", "y", 3), ("ing", "", 3), ("ed", "", 4),
                                      ("es", "", 3), ("s", "", 3)):
        if (word.endswith(suffix) and len(word) - len(suffix) >= keep
                and not (suffix == "ed" and word.endswith("eed"))
                and not (suffix == "s" and word.endswith(("ss", "us", "is")))):
            word = word[: len(word) - len(suffix)] + replacement
            stripped = True
            break
    if stripped and len(word) > 3 and word[-1] == word[-2] and word[-1] not in "lsz":
        word = word[:-1]  # stopped -> stop
    if len(word) > 3 and word.endswith("e"):
        word = word[:-1]  # breathe, breathes, breathing -> breath
    return word


def units(text: str) -> list[Unit]:
    """The units of a normalised text."""
    found = []
    for match in _UNIT.finditer(text):
        kind = match.lastgroup or "other"
        value = match.group(0)
        key = stem(value) if kind == "word" else value
        found.append(Unit(key, match.start(), match.end(), kind))
    return found


@functools.cache
def _pinyin_table() -> dict[str, tuple[str, ...]]:
    """Toneless readings of every character, from pypinyin's single-character table.

    Read from the package's JSON file without importing pypinyin itself, whose import loads the
    phrase dictionaries; readings are interned, so ~20k characters share ~400 syllables.
    """
    spec = importlib.util.find_spec("pypinyin")
    if spec is None or not spec.submodule_search_locations:
        return {}
    path = Path(next(iter(spec.submodule_search_locations))) / "pinyin_dict.json"
    raw: dict[str, str] = json.loads(path.read_text(encoding="utf-8"))
    syllables: dict[str, str] = {}  # toned reading -> its toneless syllable
    interned: dict[str, str] = {}  # one string per toneless syllable
    table: dict[str, tuple[str, ...]] = {}
    for code, readings in raw.items():
        char = chr(int(code))
        if not is_cjk(char):
            continue
        toneless = []
        for reading in readings.split(","):
            plain = syllables.get(reading)
            if plain is None:
                folded = unicodedata.normalize("NFD", reading).replace("u\u0308", "v")
                plain = "".join(c for c in folded if not unicodedata.combining(c))
                plain = syllables[reading] = interned.setdefault(plain, plain)
            toneless.append(plain)
        table[char] = tuple(dict.fromkeys(toneless))
    return table


def pinyin(char: str) -> tuple[str, ...]:
    """Toneless readings of one character (empty when unknown)."""
    return _pinyin_table().get(char, ())


@dataclass(frozen=True)
class _Form:
    keys: tuple[str, ...]
    name: str
    group: str
    sounds: tuple[tuple[str, ...], ...] = ()  # readings per character, Chinese forms only


class Matcher:
    """A lexicon compiled for matching: forms by first key, by first syllable, the vocabulary."""

    def __init__(self, lexicon: Lexicon, extra: Iterable[tuple[str, str, str]] = ()) -> None:
        self.lexicon = lexicon
        self.by_first: dict[str, list[_Form]] = {}
        # Forms by the readings of their first two characters (every pair of readings).
        self.by_sound: dict[tuple[str, str], list[_Form]] = {}
        self.exact_texts: set[str] = set()
        vocabulary: set[str] = set()
        known: set[str] = set()
        entries = [(e.name, e.group, f) for e in lexicon.entries.values() for f in e.forms]
        for name, group, form in [*entries, *extra]:
            keys = tuple(u.key for u in units(normalise(form).text))
            if not keys:
                continue
            if group == "spelling":
                known.update(keys)
                continue
            words = re.findall(r"[a-z]+", normalise(form).text)
            known.update(words)
            if group not in ("context", "exclusion"):
                vocabulary.update(w for w in words if len(w) >= 4)
            compiled = _Form(keys, name, group)
            self.by_first.setdefault(keys[0], []).append(compiled)
            if len(keys) >= 2 and all(is_cjk(k) for k in keys):
                self.exact_texts.add("".join(keys))
                if group in ("symptom", "body", "finding"):
                    sounds = tuple(pinyin(k) for k in keys)
                    if all(sounds):
                        sounded = _Form(keys, name, group, sounds)
                        for first in sounds[0]:
                            for second in sounds[1]:
                                self.by_sound.setdefault((first, second), []).append(sounded)
        self.vocabulary = sorted(vocabulary)
        self.known = frozenset(known)

    @functools.lru_cache(maxsize=4096)  # noqa: B019 - one matcher per lexicon, kept for good
    def correction(self, word: str) -> str | None:
        """The lexicon word a misspelt English word stands for, or None."""
        if len(word) < 4 or not word.isalpha() or word in self.known or stem(word) in self.known:
            return None
        if len(word) == 4:
            return self._short_correction(word)
        candidates = [(distance, Indel.distance(word, choice), choice)
                      for choice, distance, _ in process.extract(
                          word, self.vocabulary, scorer=OSA.distance, score_cutoff=2, limit=10)
                      if distance <= (2 if max(len(word), len(choice)) >= 8 else 1)]
        # Equal edits: a letter dropped or doubled (chils -> chills) before one replaced (child).
        return str(min(candidates)[2]) if candidates else None

    def _short_correction(self, word: str) -> str | None:
        """A four-letter slip: two neighbours swapped (pian) or one letter left out inside the
        word (fevr, cogh), first and last letters kept. A letter replaced is no slip here: too
        many short words are one letter from a lexicon word (rain, main, gain: pain)."""
        found = []
        for choice in self.vocabulary:
            if len(choice) not in (4, 5) or choice[0] != word[0] or choice[-1] != word[-1]:
                continue
            if len(choice) == 4 and OSA.distance(word, choice) == 1 and sorted(word) == sorted(
                    choice):
                found.append(choice)  # a swap keeps the letters
            elif len(choice) == 5 and any(choice[:i] + choice[i + 1:] == word
                                          for i in range(1, 4)):
                found.append(choice)
        return min(found) if len(found) == 1 else None

    def find(self, text: Normalised, found_units: list[Unit]) -> list[Occurrence]:
        """Every concept occurrence, longest first where they nest (inner ones dropped)."""
        keys = [u.key for u in found_units]
        corrected = [False] * len(keys)
        for i, unit in enumerate(found_units):
            if unit.kind == "word":
                fix = self.correction(text.text[unit.start:unit.end])
                if fix is not None:
                    keys[i], corrected[i] = stem(fix), True
        occurrences: list[Occurrence] = []
        n = len(keys)
        for i in range(n):
            for form in self.by_first.get(keys[i], ()):
                end = i + len(form.keys)
                if end <= n and tuple(keys[i:end]) == form.keys:
                    occurrences.append(Occurrence(form.name, form.group, i, end,
                                                  self._how(text, found_units, corrected,
                                                            i, end)))
        exact = [(o.first, o.last) for o in occurrences]
        for guess in self._homophones(found_units, keys):
            # A guess across the edge of a word that is really there is no slip (有胸闷).
            if not any(a < guess.first < b < guess.last or guess.first < a < guess.last < b
                       for a, b in exact):
                occurrences.append(guess)
        return _outermost(occurrences)

    def _how(self, text: Normalised, found_units: list[Unit], corrected: list[bool],
             first: int, last: int) -> str:
        if any(corrected[first:last]):
            return "misspelling"
        start, end = found_units[first].start, found_units[last - 1].end
        if text.folded[start:end] != text.text[start:end]:
            return "traditional"
        return "exact"

    def _homophones(self, found_units: list[Unit], keys: list[str]) -> list[Occurrence]:
        found = []
        n = len(keys)
        sounds_of = [pinyin(k)[:1] if u.kind == "cjk" else () for k, u in zip(keys, found_units,
                                                                                strict=True)]
        for i in range(n - 1):
            if not (sounds_of[i] and sounds_of[i + 1]):
                continue
            for form in self.by_sound.get((sounds_of[i][0], sounds_of[i + 1][0]), ()):
                end = i + len(form.keys)
                if end > n:
                    continue
                if not all(sounds_of[i + j] and sounds_of[i + j][0] in sounds
                           for j, sounds in enumerate(form.sounds)):
                    continue
                window = keys[i:end]
                if "".join(window) in self.exact_texts:
                    continue
                differing = sum(1 for a, b in zip(window, form.keys, strict=True) if a != b)
                if not 1 <= differing <= (2 if len(window) >= 4 else 1):
                    continue
                if len(window) == 2 and any(a == b and a in _PARTICLES
                                            for a, b in zip(window, form.keys, strict=True)):
                    continue  # 少了 is not 烧了: a particle carries no meaning to match on
                found.append(Occurrence(form.name, form.group, i, end, "homophone"))
        return found


# An outer occurrence of these groups swallows any inner one; others swallow only their own
# group and cues ("left leg", a side, keeps its leg for "left leg swollen").
_SWALLOW_ALL = frozenset({"symptom", "context", "exclusion"})
_SWALLOWED_ALWAYS = frozenset({"context", "exclusion"})


def _swallows(outer: Occurrence, inner: Occurrence) -> bool:
    return (outer.group in _SWALLOW_ALL or inner.group in _SWALLOWED_ALWAYS
            or outer.group == inner.group)


def _outermost(occurrences: list[Occurrence]) -> list[Occurrence]:
    """Drop occurrences inside a longer one that swallows them, and duplicates."""
    unique = {(o.name, o.first, o.last): o for o in
              sorted(occurrences, key=lambda o: HOW.index(o.how), reverse=True)}
    ordered = sorted(unique.values(), key=lambda o: (o.first, -(o.last - o.first)))
    kept = []
    active: list[Occurrence] = []  # occurrences still open at the current start
    for occurrence in ordered:
        active = [a for a in active if a.last > occurrence.first]
        length = occurrence.last - occurrence.first
        inside = any(a.last >= occurrence.last and a.last - a.first > length
                     and _swallows(a, occurrence) for a in active)
        active.append(occurrence)
        if not inside:
            kept.append(occurrence)
    return kept

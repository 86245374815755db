"""One spelling for every way of typing the same words, with a map back to the original text.

Patients type on phones: full-width punctuation from Chinese keyboards, traditional characters
(Hong Kong, Taiwan, older relatives), capitals, emoji. Everything downstream matches against one
normalised form, and every span found there is mapped back to the characters the patient wrote,
so staff see exactly what fired.
"""

from __future__ import annotations

import functools
import unicodedata
from dataclasses import dataclass

import opencc

# Created once: OpenCC loads its dictionaries on construction (~40 ms).
_T2S = opencc.OpenCC("t2s")

LIMIT = 20_000  # characters read from one report; a report is a few lines

# Punctuation NFKC leaves alone, folded to the ASCII the clause splitter knows.
_PUNCT = {"。": ".", "｡": ".", "“": '"', "”": '"', "‘": "'", "’": "'", "…": ".",
          "～": "~", "〜": "~", "—": "-", "–": "-", "【": "(", "】": ")", "《": "(", "》": ")",
          "「": '"', "」": '"', "『": '"', "』": '"', "·": " ", "•": " "}

# Cantonese written characters (Hong Kong relatives write as they speak) folded to the Mandarin
# the lexicon is written in: 冇力 -> 没力, 睇唔到嘢 -> 看不到东西, 止唔到 -> 止不到.
CANTONESE = {"冇": "没", "唔": "不", "睇": "看", "嘢": "东西", "咗": "了", "佢": "他", "嘅": "的",
             "係": "是", "喺": "在", "啲": "些", "乜": "什么", "瞓": "睡", "攰": "累", "痾": "拉",
             "冧": "倒", "揸": "拿", "咁": "这么"}

# Emoji that carry a symptom become the word for it (matched by the English lexicon, which
# runs on every text); every other emoji is a space.
EMOJI_WORDS = {"🤒": " fever ", "🌡": " fever ", "🤮": " vomiting ", "🤢": " nausea ",
               "😷": " unwell ", "🤧": " sneezing ", "🤕": " injury ", "🩸": " bleeding ",
               "😵": " dizzy ", "🥶": " chills ", "🥵": " hot ", "🫁": " breathing ",
               "💩": " stool ", "🤰": " pregnant ", "🚑": " ambulance ", "🏥": " hospital "}


def is_cjk(char: str) -> bool:
    """A Chinese character (the unified blocks patients' keyboards produce)."""
    return "\u3400" <= char <= "\u9fff" or "\uf900" <= char <= "\ufaff"


def _is_emoji(char: str) -> bool:
    code = ord(char)
    return (0x1F000 <= code <= 0x1FAFF or 0x2600 <= code <= 0x27BF or code in (0xFE0F, 0x200D)
            or 0x1F1E6 <= code <= 0x1F1FF)


@dataclass(frozen=True)
class Normalised:
    """The normalised text and, per normalised character, the original index it came from."""

    original: str
    text: str  # normalised
    origin: tuple[int, ...]
    folded: str = ""  # normalised but before traditional -> simplified (to tell which was which)

    def span(self, start: int, end: int) -> tuple[int, int]:
        """A normalised span [start, end) as a span of the original text."""
        if not self.origin or start >= end:
            return (0, 0)
        first = self.origin[min(start, len(self.origin) - 1)]
        last = self.origin[min(end, len(self.origin)) - 1]
        return (first, last + 1)


@functools.lru_cache(maxsize=8192)
def _fold_char(char: str) -> str:
    """One original character, normalised (may become several, or none)."""
    if char in EMOJI_WORDS:
        return EMOJI_WORDS[char]
    if char in CANTONESE:
        return CANTONESE[char]
    if _is_emoji(char):
        return " "
    folded = unicodedata.normalize("NFKC", char).casefold()
    out = []
    for c in folded:
        if unicodedata.category(c) == "Mn":
            continue  # accents typed as combining marks
        out.append(_PUNCT.get(c, c))
    return "".join(out)


@functools.lru_cache(maxsize=8192)
def _simplified(char: str) -> str:
    converted = _T2S.convert(char)
    return converted if len(converted) == 1 else char


def _to_simplified(text: str) -> str:
    """Traditional to simplified, phrase-aware when OpenCC keeps the length, else per char."""
    if not any(is_cjk(c) for c in text):
        return text
    converted = str(_T2S.convert(text))  # OpenCC is untyped
    if len(converted) == len(text):
        return converted
    return "".join(_simplified(c) if is_cjk(c) else c for c in text)


def normalise(text: str) -> Normalised:
    """NFKC, casefold, punctuation, emoji, Cantonese characters, traditional to simplified;
    spans stay traceable."""
    text = text[:LIMIT]
    if text.isascii():
        lowered = text.lower()
        return Normalised(text, lowered, tuple(range(len(text))), lowered)
    chars: list[str] = []
    origin: list[int] = []
    for index, char in enumerate(text):
        folded = _fold_char(char)
        for c in folded:
            chars.append(c)
            origin.append(index)
    # A space between two Chinese characters is a typing accident, not a word break.
    keep = [not (chars[i].isspace() and 0 < i < len(chars) - 1 and is_cjk(chars[i - 1])
                 and is_cjk(chars[i + 1])) for i in range(len(chars))]
    joined = "".join(c for c, k in zip(chars, keep, strict=True) if k)
    kept_origin = tuple(o for o, k in zip(origin, keep, strict=True) if k)
    return Normalised(text, _to_simplified(joined), kept_origin, joined)

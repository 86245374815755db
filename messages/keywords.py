"""Inbound keywords patients type by SMS (and may type on Telegram), in both languages.

A message is a keyword only when the whole message is one (after folding case, full-width forms,
traditional characters, spaces and surrounding punctuation); anything else is free text, which
the conversation core reads as a report. Deliberately not keywords:
- YES: Twilio counts it as an opt-in, but patients write "yes" to answer questions, so a paused
  patient could resume messages by accident; START and UNSTOP resume.
- Single letters, T included: the Chinese carriers' 回T退订 convention is theirs to apply, and
  a lone T (a typo, "T" for taken) must not opt a patient out. Carriers' STOP words match only
  as the whole message.
"""

from __future__ import annotations

import re
import unicodedata
from enum import StrEnum


class Keyword(StrEnum):
    TAKEN = "taken"
    SKIP = "skip"
    SNOOZE = "snooze"
    MISSED = "missed"
    STOP = "stop"
    START = "start"
    HELP = "help"
    REPORT = "report"
    LANGUAGE = "language"


_KEYWORDS: dict[Keyword, tuple[str, ...]] = {
    Keyword.TAKEN: ("taken", "took", "took it", "done", "1", "已服", "已服用", "已服药",
                    "已吃", "已吃药", "吃了", "吃过了", "服了", "已经吃了"),
    # "2" is the reminder's second choice, "not taken": answered with the missed-dose rule.
    Keyword.SKIP: ("skip", "skipped", "跳过"),
    Keyword.SNOOZE: ("snooze", "later", "3", "稍后", "延后", "晚点", "等会", "稍后提醒"),
    Keyword.MISSED: ("missed", "miss", "2", "not taken", "not yet", "未服", "没服", "没吃",
                     "还没吃", "漏服", "漏吃", "忘服", "忘了吃", "忘记吃了"),
    # Twilio's opt-out words: Twilio itself blocks the number on these, so we must pause too.
    Keyword.STOP: ("stop", "stopall", "stop all", "unsubscribe", "cancel", "end", "quit",
                   "optout", "opt out", "opt-out", "revoke", "退订", "td", "取消订阅"),
    Keyword.START: ("start", "unstop", "resume", "恢复", "开始", "订阅"),
    Keyword.HELP: ("help", "info", "帮助", "求助", "?"),
    Keyword.REPORT: ("report", "symptom", "symptoms", "report symptoms", "症状", "报告",
                     "报告症状", "不舒服"),
    Keyword.LANGUAGE: ("lang", "language", "语言", "切换语言"),
}

# Traditional characters in the words above (and in language names), folded to simplified: a
# table of a few characters is cheap, a full converter is not needed for whole-message keywords.
_TRADITIONAL = str.maketrans(
    "過後訂閱幫狀語報藥記簡漢體開復國華會點",
    "过后订阅帮状语报药记简汉体开复国华会点",
)
# Surrounding characters that never change what a one-word reply means.
_EDGE = re.compile(r"^[\W_]+|[\W_]+$")
_SPACES = re.compile(r"\s+")


def normalize(text: str) -> str:
    """Fold full-width forms, case and traditional characters; trim spaces and punctuation.

    A text of nothing but punctuation keeps it (so "?" can still mean HELP).
    """
    folded = unicodedata.normalize("NFKC", text).casefold()
    folded = unicodedata.normalize("NFKC", folded).translate(_TRADITIONAL)
    folded = "".join(ch for ch in folded if unicodedata.category(ch) not in ("Cc", "Cf")
                     or ch in "\n\t")
    folded = _SPACES.sub(" ", folded).strip()
    trimmed = _EDGE.sub("", folded)
    return trimmed if trimmed else folded


def _table() -> dict[str, Keyword]:
    table: dict[str, Keyword] = {}
    for keyword, words in _KEYWORDS.items():
        for word in words:
            key = normalize(word)
            if table.setdefault(key, keyword) is not keyword:
                raise ValueError(f"{word!r} is both {table[key]} and {keyword}")
    return table


_WORDS = _table()


def parse_keyword(text: str) -> Keyword | None:
    """The keyword a whole message is, or None when it is free text (read as a report)."""
    key = normalize(text)
    return _WORDS.get(key) or _WORDS.get(key.replace(" ", ""))


_LANGUAGES: dict[str, tuple[str, ...]] = {
    "zh": ("中文", "简体", "简体中文", "汉语", "普通话", "华语", "国语", "繁体", "繁体中文", "中",
           "zh", "zh-cn", "zh_cn", "zh-hans", "cn", "chinese", "1"),
    "en": ("english", "英文", "英语", "英", "en", "en-us", "en-gb", "eng", "2"),
}
_LANGUAGE_WORDS = {normalize(word): code for code, words in _LANGUAGES.items() for word in words}


def parse_language(text: str) -> str | None:
    """The language a reply to the language question chooses ("zh" or "en"), or None."""
    key = normalize(text)
    return _LANGUAGE_WORDS.get(key) or _LANGUAGE_WORDS.get(key.replace(" ", ""))


def language_name(text: str) -> str | None:
    """The language a whole message names ("中文", "English"), or None: how a patient answers
    the language question by typing a button's label. Digits are dose answers here, not
    languages (1 = taken), so a keyword is never a language."""
    if parse_keyword(text) is not None:
        return None
    return parse_language(text)

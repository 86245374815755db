"""Inbound keywords patients type by SMS (and may type on Telegram), in both languages."""

from __future__ import annotations

import unicodedata
from enum import StrEnum


class Keyword(StrEnum):
    TAKEN = "taken"
    SKIP = "skip"
    SNOOZE = "snooze"
    STOP = "stop"
    START = "start"
    HELP = "help"
    REPORT = "report"
    LANGUAGE = "language"


_WORDS: dict[str, Keyword] = {
    "taken": Keyword.TAKEN, "took": Keyword.TAKEN, "1": Keyword.TAKEN, "已服": Keyword.TAKEN,
    "skip": Keyword.SKIP, "2": Keyword.SKIP, "跳过": Keyword.SKIP,
    "snooze": Keyword.SNOOZE, "3": Keyword.SNOOZE, "稍后": Keyword.SNOOZE,
    "stop": Keyword.STOP, "退订": Keyword.STOP, "td": Keyword.STOP,
    "start": Keyword.START, "help": Keyword.HELP, "帮助": Keyword.HELP,
    "report": Keyword.REPORT, "症状": Keyword.REPORT,
    "lang": Keyword.LANGUAGE, "language": Keyword.LANGUAGE, "语言": Keyword.LANGUAGE,
}


def normalize(text: str) -> str:
    """Fold full-width forms and case, trim spaces and trailing punctuation."""
    folded = unicodedata.normalize("NFKC", text).casefold().strip()
    return folded.strip(" .!。！,，")


def parse_keyword(text: str) -> Keyword | None:
    """The keyword a whole message is, or None when it is free text (read as a report)."""
    return _WORDS.get(normalize(text))

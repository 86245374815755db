"""Inbound keywords and language choices, in both languages and every form a phone produces."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from messages.keywords import (
    _KEYWORDS,
    Keyword,
    language_name,
    normalize,
    parse_keyword,
    parse_language,
)

EXPECTED = {
    Keyword.TAKEN: ["TAKEN", "took", "1", "已服", "已吃", "吃了", "ＴＡＫＥＮ", "１", " Taken. ",
                    "“已服”", "【1】", "taken!!", "吃了。"],
    Keyword.SKIP: ["SKIP", "跳过", "跳過", "skip!"],
    Keyword.SNOOZE: ["SNOOZE", "3", "稍后", "延后", "稍後", "延後", "Snooze."],
    Keyword.STOP: ["STOP", "stop", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPTOUT",
                   "REVOKE", "退订", "退訂", "TD", "td", "Stop all", "ＳＴＯＰ", "退订！"],
    Keyword.START: ["START", "UNSTOP", "start", "/start"],
    Keyword.HELP: ["HELP", "INFO", "帮助", "幫助", "help?", "/help", "?"],
    Keyword.REPORT: ["REPORT", "症状", "症狀", "report"],
    Keyword.LANGUAGE: ["LANG", "LANGUAGE", "语言", "語言", "/language", "Lang"],
    # 2 is the reminder's "not taken": the missed-dose rule, never a skip (issue 16).
    Keyword.MISSED: ["MISSED", "漏服", "missed", "2", "２", "未服", "not taken"],
}


@pytest.mark.parametrize(
    ("text", "keyword"), [(text, kw) for kw, texts in EXPECTED.items() for text in texts])
def test_keywords(text: str, keyword: Keyword) -> None:
    assert parse_keyword(text) is keyword


@pytest.mark.parametrize("text", [
    "YES", "yes", "y", "ok", "", "   ", "4", "12", "I took it at 9 but feel dizzy",
    "taken but I have a fever", "发烧38.5", "stop taking?", "/start ABCD2345", "吃了两次",
    "T", "t", "Ｔ", "T.",
])
def test_free_text_is_not_a_keyword(text: str) -> None:
    """YES is not START (it answers questions); anything longer than a keyword is a report."""
    assert parse_keyword(text) is None


@pytest.mark.parametrize(("text", "language"), [
    ("中文", "zh"), ("简体", "zh"), ("簡體", "zh"), ("汉语", "zh"), ("zh", "zh"), ("1", "zh"),
    ("１", "zh"), ("Chinese", "zh"), ("中文。", "zh"),
    ("English", "en"), ("english", "en"), ("英文", "en"), ("EN", "en"), ("2", "en"),
    ("ＥＮ", "en"), ("英语", "en"), ("英語", "en"),
    ("3", None), ("French", None), ("", None), ("中文和英文", None),
])
def test_parse_language(text: str, language: str | None) -> None:
    assert parse_language(text) == language


@pytest.mark.parametrize(("text", "language"), [
    ("中文", "zh"), ("English", "en"), ("english!", "en"), ("英文", "en"), ("简体中文", "zh"),
    ("1", None), ("2", None), ("taken", None), ("I speak English", None),
])
def test_a_typed_language_name_answers_the_language_question(text: str,
                                                             language: str | None) -> None:
    assert language_name(text) == language


def test_no_word_is_two_keywords() -> None:
    seen: dict[str, Keyword] = {}
    for keyword, words in _KEYWORDS.items():
        for word in words:
            assert seen.setdefault(normalize(word), keyword) is keyword, word


def test_normalize_folds_width_case_traditional_and_edges() -> None:
    assert normalize("  ＨＥＬＰ！！ ") == "help"
    assert normalize("\u200b幫助\u3000") == "帮助"
    assert normalize("Stop   all") == "stop all"
    assert normalize("...") == "..."


def decorate(word: str, data: st.DataObject) -> str:
    """The word as a phone may send it: case, width, spaces and punctuation around it."""
    cased = "".join(ch.upper() if data.draw(st.booleans()) else ch for ch in word)
    wide = "".join(
        unicodedata.lookup(f"FULLWIDTH {unicodedata.name(ch)}")
        if data.draw(st.booleans()) and _has_fullwidth(ch) else ch
        for ch in cased
    )
    edge = st.text(alphabet=" \u3000.。!！?？,，\"“”【】()（）~\n", max_size=3)
    return data.draw(edge) + wide + data.draw(edge)


def _has_fullwidth(ch: str) -> bool:
    try:
        unicodedata.lookup(f"FULLWIDTH {unicodedata.name(ch)}")
    except KeyError:
        return False
    return True


@given(st.data())
def test_every_keyword_survives_how_phones_send_it(data: st.DataObject) -> None:
    keyword = data.draw(st.sampled_from(list(_KEYWORDS)))
    word = data.draw(st.sampled_from([w for w in _KEYWORDS[keyword] if w.strip("?")]))
    assert parse_keyword(decorate(word, data)) is keyword


@given(st.text())
def test_parsing_never_raises(text: str) -> None:
    assert isinstance(normalize(text), str)
    assert parse_keyword(text) is None or isinstance(parse_keyword(text), Keyword)
    assert parse_language(text) in (None, "zh", "en")


@given(st.text(alphabet=st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
               | st.characters(min_codepoint=0x2000, max_codepoint=0x33FF)
               | st.characters(min_codepoint=0xFE00, max_codepoint=0xFFFF)))
def test_parsing_never_raises_on_surrogates_and_odd_forms(text: str) -> None:
    """Lone surrogates, compatibility forms and specials (what broken phones send) included."""
    normalize(text)
    parse_keyword(text)
    parse_language(text)


@given(st.text())
def test_normalize_is_idempotent(text: str) -> None:
    once = normalize(text)
    assert normalize(once) == once

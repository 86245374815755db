"""The same-day reply promises no "today" (it may be 23:00 or a Sunday) and keeps the 120 line."""

from __future__ import annotations

from messages import catalogue


def test_same_day_reply_says_as_soon_as_possible_and_keeps_120() -> None:
    en = catalogue.render("report.reply_same_day", "en")
    zh = catalogue.render("report.reply_same_day", "zh")
    assert "today" not in en
    assert "as soon as possible" in en
    assert "next morning" in en
    assert "今天" not in zh
    assert "尽快" in zh
    assert "次日" in zh
    assert "120" in en
    assert "120" in zh

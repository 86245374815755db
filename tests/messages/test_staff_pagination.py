"""Long staff answers: pages under Telegram's limit, whole rows, page buttons."""

from __future__ import annotations

import pytest

from messages.actions import PageAction, parse
from messages.pagination import TELEGRAM_LIMIT, paginate, pick


def test_rows_are_never_cut_and_every_row_is_on_exactly_one_page() -> None:
    rows = [f"BJ01-{i:03d} · " + "x" * (50 + i % 40) for i in range(400)]
    pages = paginate("header line", rows)
    assert len(pages) > 1
    seen = []
    for page in pages:
        assert len(page.text) < TELEGRAM_LIMIT
        lines = page.text.split("\n")
        assert lines[0] == "header line"
        seen += lines[1:]
        assert page.count == len(pages)
    assert seen == rows
    assert [p.number for p in pages] == list(range(1, len(pages) + 1))


def test_size_limit_splits_before_the_row_that_would_overflow() -> None:
    rows = ["y" * 900 for _ in range(10)]
    pages = paginate("h", rows, limit=2000)
    assert all(len(p.text) <= 2000 for p in pages)
    assert sum(len(p.text.split("\n")) - 1 for p in pages) == 10


def test_short_answer_is_one_page() -> None:
    pages = paginate("h", ["a", "b"])
    assert len(pages) == 1
    assert pages[0].text == "h\na\nb"


def test_page_actions_round_trip_and_fit_in_64_bytes() -> None:
    action = PageAction("adherence BJ01", 3).pack()
    assert action == "page:adherence BJ01:3"
    assert parse(action) == PageAction("adherence BJ01", 3)
    assert parse("page:adherence:-1") is None
    assert parse("page:nonsense") is None
    with pytest.raises(ValueError):
        PageAction("adherence " + "X" * 60, 1).pack()


def test_pick_clamps_to_existing_pages() -> None:
    pages = paginate("h", [str(i) for i in range(50)], rows_per_page=10)
    assert pick(pages, 99).number == 5
    assert pick(pages, 0).number == 1

"""Long staff answers split into pages that fit one Telegram message, never cut mid-row.

A page button carries `messages.actions.PageAction` (`page:{command}:{n}`), where `command` is
the staff command with its arguments (e.g. `adherence` or `adherence BJ01`); pressing it re-runs
the command and shows page n, so nothing is kept between presses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

TELEGRAM_LIMIT = 4096
# Room left for the page footer and the header, in characters; the check in `paginate` is on
# the final text, so this is only a starting budget.
PAGE_BUDGET = 3800
ROWS_PER_PAGE = 20  # readable on a phone without scrolling back and forth
UNLIMITED_ROWS = 1 << 30  # split by size only (messages sent one after another, no buttons)


@dataclass(frozen=True)
class Page:
    """One page of an answer: its text and its 1-based position."""

    text: str
    number: int
    count: int


def paginate(header: str, rows: Sequence[str], *, footer: str = "",
             limit: int = PAGE_BUDGET, rows_per_page: int = ROWS_PER_PAGE) -> list[Page]:
    """Split rows into pages of at most `limit` characters, each starting with the header.

    A row longer than a page on its own is shortened with an ellipsis rather than split.
    """
    fixed = len(header) + len(footer) + 2
    room = max(limit - fixed, 40)
    chunks: list[list[str]] = [[]]
    size = 0
    for row in rows:
        line = row if len(row) < room else row[: room - 2] + "…"
        if chunks[-1] and (size + len(line) + 1 > room or len(chunks[-1]) >= rows_per_page):
            chunks.append([])
            size = 0
        chunks[-1].append(line)
        size += len(line) + 1
    count = len(chunks)
    pages = []
    for number, chunk in enumerate(chunks, start=1):
        parts = [header, *chunk] if header else list(chunk)
        if footer:
            parts.append(footer)
        pages.append(Page("\n".join(parts), number, count))
    return pages


def pick(pages: Sequence[Page], number: int) -> Page:
    """Page `number` (clamped to the pages there are)."""
    return pages[min(max(number, 1), len(pages)) - 1]

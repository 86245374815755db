"""The adherence chart: the grid matches the dose records; the PNG is a real image of its size."""

from __future__ import annotations

import io
from datetime import date, timedelta

from PIL import Image

from storage.db import Database
from study import chart
from tests.factories import dose_row, patient_row, site_row

LAST = date(2026, 3, 1)


async def test_grid_cells_match_the_seeded_dose_records(db: Database) -> None:
    days = chart.chart_days(LAST)
    async with db.write() as session:
        await site_row(session, "BJ01")
        await site_row(session, "SH02")
        a = await patient_row(session, "BJ01-002", "BJ01")
        b = await patient_row(session, "BJ01-001", "BJ01")
        await patient_row(session, "BJ01-009", "BJ01", status="withdrawn")
        other = await patient_row(session, "SH02-001", "SH02")
        states = ["taken", "late", "skipped", "missed", "no_response", "cancelled", "reminded"]
        for i, day in enumerate(days):
            await dose_row(session, a, day, states[i % len(states)])
        # b: only some days have doses (enrolled late); the rest are not scheduled.
        await dose_row(session, b, days[-1], "taken")
        await dose_row(session, b, days[-2], "no_response", late_answer="taken")
        await dose_row(session, b, days[0] - timedelta(days=1), "missed")  # outside the window
        await dose_row(session, other, days[-1], "missed")
    async with db.read() as session:
        grid = await chart.adherence_grid(session, "BJ01", last_day=LAST)
    assert grid.days == days
    assert len(days) == 14
    assert days[-1] == LAST
    assert grid.subjects == ("BJ01-001", "BJ01-002")
    expected_a = tuple({"cancelled": "not_scheduled", "reminded": "open"}.get(s, s)
                       for s in (states[i % len(states)] for i in range(14)))
    assert grid.cells[1] == expected_a
    assert grid.cells[0] == ("not_scheduled",) * 12 + ("no_response", "taken")


def test_png_is_a_valid_image_of_the_expected_size() -> None:
    days = chart.chart_days(LAST)
    kinds = chart.KINDS
    grid = chart.Grid("BJ01", days, tuple(f"BJ01-{i:03d}" for i in range(30)),
                      tuple(tuple(kinds[(i + j) % len(kinds)] for j in range(14))
                            for i in range(30)))
    png = chart.draw_chart(grid, language="zh")
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    image = Image.open(io.BytesIO(png))
    image.verify()
    assert image.format == "PNG"
    assert image.size == chart.chart_size(30)
    width, height = image.size
    assert width + height <= 10000
    assert width == 1000


def test_chart_size_grows_with_patients_and_stays_within_telegram_limits() -> None:
    assert chart.chart_size(10)[1] < chart.chart_size(40)[1]
    assert sum(chart.chart_size(5000)) <= 10000


def test_palette_is_distinct_and_every_status_has_a_legend_entry() -> None:
    colours = [colour for colour, _ in chart.CELLS.values()]
    assert len(set(colours)) == len(colours)
    assert set(chart.KINDS) == {"taken", "late", "skipped", "missed", "no_response",
                                        "open", "not_scheduled"}
    for language in ("en", "zh"):
        labels = [label for _, label in chart.legend(language)]
        assert len(labels) == len(chart.KINDS)
        assert all(labels)

"""The site's adherence chart: patients x the last 14 local days, one coloured cell per dose.

The grid (what each cell is) is computed from the dose records by `adherence_grid`; the picture
is drawn from that grid alone by `draw_chart`, so the two can be checked separately. Subject
ids only. The palette is Okabe-Ito (safe for the common colour-vision deficiencies), and every
cell also carries a letter, so no meaning rests on colour alone.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from functools import cache
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from messages import catalogue
from storage.models import DoseRecord, Patient
from trial.adherence import Day, day_status

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DAYS = 14
# Cell kinds (a day's status by trial/adherence.py) in legend order, with (colour, letter).
# "open" is a dose whose answer or cut-off is still to come.
CELLS: dict[str, tuple[str, str]] = {
    Day.TAKEN.value: ("#009E73", "T"),
    Day.LATE.value: ("#56B4E9", "L"),
    Day.SKIPPED.value: ("#E69F00", "S"),
    Day.MISSED.value: ("#D55E00", "M"),
    Day.NO_RESPONSE.value: ("#CC79A7", "?"),
    Day.OPEN.value: ("#F0E442", "…"),
    Day.NOT_SCHEDULED.value: ("#E8E8E8", ""),
}
KINDS = tuple(CELLS)
DPI = 100
WIDTH_IN = 10.0
ROW_IN = 0.32
MARGIN_IN = 2.2  # title, date labels and legend
MAX_HEIGHT_PX = 8000  # Telegram refuses photos whose sides add up to more than 10000 px


@dataclass(frozen=True)
class Grid:
    """Cells of the chart: `cells[i][j]` is subject i on day j (a kind from KINDS)."""

    site_id: str
    days: tuple[date, ...]
    subjects: tuple[str, ...]
    cells: tuple[tuple[str, ...], ...]


def chart_days(last_day: date, days: int = DAYS) -> tuple[date, ...]:
    """The `days` local dates ending with `last_day`, oldest first."""
    return tuple(last_day - timedelta(days=days - 1 - i) for i in range(days))


async def adherence_grid(session: AsyncSession, site_id: str, *, last_day: date,
                         days: int = DAYS) -> Grid:
    """The chart's cells from the dose records of the site's enrolled (not withdrawn) patients."""
    dates = chart_days(last_day, days)
    patients = (await session.execute(
        select(Patient).where(Patient.site_id == site_id, Patient.status != "withdrawn")
        .order_by(Patient.subject_id))).scalars().all()
    doses = (await session.execute(
        select(DoseRecord).where(DoseRecord.patient_id.in_([p.id for p in patients]),
                                 DoseRecord.local_date >= dates[0],
                                 DoseRecord.local_date <= dates[-1]))).scalars().all()
    by_key = {(d.patient_id, d.local_date): d for d in doses}
    cells = []
    for patient in patients:
        row = []
        for day in dates:
            row.append(day_status(by_key.get((patient.id, day))))
        cells.append(tuple(row))
    return Grid(site_id, dates, tuple(p.subject_id for p in patients), tuple(cells))


def chart_size(patients: int) -> tuple[int, int]:
    """Width and height in pixels of the chart for that many patients."""
    width, height = _figure_inches(patients)
    return round(width * DPI), round(height * DPI)


def _figure_inches(patients: int) -> tuple[float, float]:
    height = MARGIN_IN + ROW_IN * max(patients, 1)
    return WIDTH_IN, min(height, MAX_HEIGHT_PX / DPI)


@cache
def _pyplot() -> Any:
    """matplotlib's pyplot, imported on the first drawing (about 45 MB a process that never
    draws would carry for nothing)."""
    import matplotlib

    matplotlib.use("Agg")  # no display: draw to bytes
    from matplotlib import pyplot

    return pyplot


@cache
def _cjk_font() -> str | None:
    """A font that can draw Chinese, if the machine has one."""
    from matplotlib import font_manager

    for font in font_manager.fontManager.ttflist:
        if any(key in font.name for key in ("CJK", "Hei", "Song", "WenQuanYi", "Kai")):
            return font.name
    return None


def chart_language(language: str) -> str:
    """The language the chart's labels can be drawn in here (English without a Chinese font)."""
    return language if language != "zh" or _cjk_font() else "en"


def draw_chart(grid: Grid, *, language: str = "en") -> bytes:
    """The grid as a PNG image: subjects down, days across, a legend below."""
    plt = _pyplot()
    language = chart_language(language)
    fig = plt.figure(figsize=_figure_inches(len(grid.subjects)), dpi=DPI)
    try:
        if language == "zh" and (font := _cjk_font()):
            plt.rcParams["font.sans-serif"] = [font, "DejaVu Sans"]
        _draw(fig, grid, language)
        out = io.BytesIO()
        fig.savefig(out, format="png", dpi=DPI)
        return out.getvalue()
    finally:
        plt.close(fig)


def _draw(fig: Figure, grid: Grid, language: str) -> None:
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    rows = max(len(grid.subjects), 1)
    _, height = _figure_inches(rows)
    top = 1 - 0.55 / height
    bottom = 1.45 / height
    ax = fig.add_axes((0.14, bottom, 0.84, max(top - bottom, 0.05)))
    colours = ListedColormap([CELLS[k][0] for k in KINDS])
    matrix = [[KINDS.index(k) for k in row] for row in grid.cells] or [[KINDS.index(
        "not_scheduled")] * len(grid.days)]
    ax.imshow(matrix, cmap=colours, vmin=0, vmax=len(KINDS) - 1, aspect="auto",
              interpolation="nearest")
    for i, row in enumerate(grid.cells):
        for j, kind in enumerate(row):
            letter = CELLS[kind][1]
            if letter:
                ax.text(j, i, letter, ha="center", va="center", fontsize=7,
                        color="white" if kind in ("missed", "taken") else "black")
    ax.set_xticks(range(len(grid.days)), [d.strftime("%m-%d") for d in grid.days],
                  fontsize=7, rotation=45)
    ax.set_yticks(range(len(grid.subjects)), list(grid.subjects), fontsize=7)
    ax.set_xticks([x - 0.5 for x in range(1, len(grid.days))], minor=True)
    ax.set_yticks([y - 0.5 for y in range(1, rows)], minor=True)
    ax.grid(which="minor", color="white", linewidth=1.0)
    ax.tick_params(which="minor", length=0)
    ax.set_title(catalogue.render("digest.chart_title", language, site=grid.site_id,
                                  days=len(grid.days)), fontsize=10)
    handles = [Patch(facecolor=CELLS[k][0], edgecolor="#999999",
                     label=_legend_label(k, language)) for k in KINDS]
    fig.legend(handles=handles, loc="lower center", ncol=4, fontsize=7, frameon=False)


def _legend_label(kind: str, language: str) -> str:
    letter = CELLS[kind][1]
    name = catalogue.render(f"digest.cell_{kind}", language)
    return f"{letter} {name}" if letter else name


def legend(language: str) -> Sequence[tuple[str, str]]:
    """The chart's legend as (colour, label) pairs, for a text version of it."""
    return [(CELLS[k][0], _legend_label(k, language)) for k in KINDS]

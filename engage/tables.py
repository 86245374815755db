"""Text tables printed by both the CLI and the demo (here, not in engage.commands, so that
engage.demo does not import the commands: the siblings of `engage` import one another without
a cycle)."""

from __future__ import annotations

from study.adherence import AdherenceReport

COLUMNS = ("subject", "site", "sched", "taken", "late", "skip", "missed", "no-resp",
           "confirmed", "response", "worst", "flags")


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def adherence_table(report: AdherenceReport) -> str:
    """The report as a readable fixed-width table, patients then site totals."""
    rows: list[tuple[str, ...]] = []
    for p in report.patients:
        c = p.counts
        rows.append((p.subject_id, p.site_id, str(c.scheduled), str(c.taken), str(c.late),
                     str(c.skipped), str(c.missed), str(c.no_response),
                     _percent(c.confirmed_adherence), _percent(c.response_rate),
                     _percent(c.worst_case), ",".join(p.flags.names)))
    flagged: dict[str, int] = {}
    for p in report.patients:
        flagged[p.site_id] = flagged.get(p.site_id, 0) + int(p.flags.any)
    totals = [("ALL", site, str(c.scheduled), str(c.taken), str(c.late), str(c.skipped),
               str(c.missed), str(c.no_response), _percent(c.confirmed_adherence),
               _percent(c.response_rate), _percent(c.worst_case),
               f"{flagged.get(site, 0)} flagged")
              for site, c in sorted(report.sites.items())]
    widths = [max(len(r[i]) for r in [COLUMNS, *rows, *totals]) for i in range(len(COLUMNS))]

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(cell.ljust(w) if i in (0, 1, 11) else cell.rjust(w)
                         for i, (cell, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(COLUMNS), rule, *map(line, rows), rule, *map(line, totals)])

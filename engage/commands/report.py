"""`engage report adherence [--site SITE] [--json]`: the adherence table."""

from __future__ import annotations

import argparse
from datetime import date, timedelta

from engage.commands._args import command, command_group
from engage.commands.support import CommandError, emit, parse_instant, reading
from engage.config import Settings
from engage.tables import adherence_table as table
from storage.models import Site
from study.adherence import adherence_report
from trial.adherence import LOW_THRESHOLD
from trial.protocol import load_protocol


def register(sub: argparse._SubParsersAction) -> None:
    group = command_group(sub, "report", help="reports for staff and data management")
    adherence = command(
        group, "adherence", _adherence, help="adherence per patient and per site",
        description="confirmed = (taken + late + taken confirmed after the cut-off) / scheduled;"
                    " response = answered before the cut-off / scheduled; worst = (taken + "
                    "late) / scheduled, every no-response day counted as missed. Flags: "
                    f"low_7d (< {LOW_THRESHOLD:.0%} confirmed over 7 days), missing_run (2+ "
                    "missed or unanswered days in a row).")
    adherence.add_argument("--site", help="only this site")
    adherence.add_argument("--from", dest="start", type=_date, help="first local date")
    adherence.add_argument("--to", dest="end", type=_date, help="last local date (included)")
    adherence.add_argument("--at", metavar="ISO8601", help="as of this instant (default: now)")


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date YYYY-MM-DD: {text!r}") from None


async def _adherence(args: argparse.Namespace, settings: Settings) -> int:
    protocol = load_protocol(settings.protocol)
    async with reading(settings) as session:
        if args.site and await session.get(Site, args.site) is None:
            raise CommandError(f"site: no site {args.site}")
        at = parse_instant(args.at)
        report = await adherence_report(session, protocol, now=at, site_id=args.site,
                                        start=args.start,
                                        end=args.end + timedelta(days=1) if args.end else None)
    if not report.patients:
        emit(report.as_dict(), args.json, "no patients")
        return 0
    emit(report.as_dict(), args.json, table(report))
    return 0

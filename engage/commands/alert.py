"""`engage alert list`: the study's alerts, newest first."""

from __future__ import annotations

import argparse

from engage.commands.support import cli_actor, emit, now, open_database, table
from engage.config import Settings
from study import listing


def register(sub: argparse._SubParsersAction) -> None:
    alert = sub.add_parser("alert", help="alerts raised for staff")
    alert_sub = alert.add_subparsers(dest="alert_command", required=True)
    show = alert_sub.add_parser("list", help="alerts, newest first")
    show.add_argument("--site", help="only this site's alerts")
    show.add_argument("--open", action="store_true",
                      help="only alerts not yet resolved (open or acknowledged)")
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(handler=_list)


async def _list(args: argparse.Namespace, settings: Settings) -> int:
    async with open_database(settings) as database, database.write() as session:
        rows = await listing.alerts(session, site_id=args.site, open_only=args.open, now=now(),
                                    actor=cli_actor())
    emit(rows, args.json, table(rows, ["alert_id", "subject_id", "site", "kind", "tier",
                                       "status", "opened_at", "level", "pages", "summary"],
                                "no alerts"))
    return 0

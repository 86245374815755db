"""`engage alert list`: the study's alerts, newest first."""

from __future__ import annotations

import argparse

from engage.commands._args import command, command_group
from engage.commands.support import CommandError, cli_actor, emit, now, open_database, table
from engage.config import Settings
from study import alerts, listing


def register(sub: argparse._SubParsersAction) -> None:
    group = command_group(sub, "alert", help="alerts raised for staff")
    show = command(group, "list", _list, help="alerts, newest first")
    show.add_argument("--site", help="only this site's alerts")
    show.add_argument("--open", action="store_true",
                      help="only alerts not yet resolved (open or acknowledged)")

    sae = command(group, "sae-reported", _sae_reported, help="record that a possible SAE was "
                  "reported to the sponsor (its deadline reminders stop; audited)")
    sae.add_argument("alert", metavar="ALERT", type=int, help="the alert number")
    sae.add_argument("--note", default="", help="e.g. who reported it, how (kept in the audit "
                     "trail)")


async def _list(args: argparse.Namespace, settings: Settings) -> int:
    async with open_database(settings) as database, database.write() as session:
        rows = await listing.alerts(session, site_id=args.site, open_only=args.open, now=now(),
                                    actor=cli_actor())
    emit(rows, args.json, table(rows, ["alert_id", "subject_id", "sender", "site", "kind", "tier",
                                       "status", "opened_at", "level", "pages", "summary"],
                                "no alerts"))
    return 0


async def _sae_reported(args: argparse.Namespace, settings: Settings) -> int:
    at = now()
    async with open_database(settings) as database:
        try:
            async with database.write() as session:
                alert, new = await alerts.record_sae_reported(
                    session, None, args.alert, now=at, actor=cli_actor(),
                    note=args.note or "recorded from the command line")
                reported_at = alert.sae_reported_at
        except alerts.AlertError as exc:
            raise CommandError(f"alert {args.alert}: {exc.code.replace('_', ' ')}") from None
    emit({"alert_id": args.alert, "sae_reported_at": reported_at, "new": new}, args.json,
         f"alert #{args.alert}: reported to the sponsor "
         + ("recorded" if new else "was already recorded"))
    return 0

"""`engage site add|update|list`: the study sites."""

from __future__ import annotations

import argparse

from engage.commands.support import (
    cli_actor,
    describe_changes,
    emit,
    now,
    open_database,
    refused,
    table,
)
from engage.config import Settings
from study import listing
from study.changes import update_site
from study.enrolment import add_site
from trial.protocol import load_protocol


def register(sub: argparse._SubParsersAction) -> None:
    site = sub.add_parser("site", help="study sites")
    site_sub = site.add_subparsers(dest="site_command", required=True)
    add = site_sub.add_parser("add", help="register a site")
    add.add_argument("site", metavar="SITE", help="site code, e.g. BJ01")
    add.add_argument("--name", required=True, help="hospital name")
    add.add_argument("--tz", required=True, help="IANA time zone, e.g. Asia/Shanghai")
    add.add_argument("--phone", help="site phone in E.164, e.g. +861012345678")
    add.add_argument("--json", action="store_true", help="print JSON")
    add.set_defaults(handler=_add)

    fix = site_sub.add_parser("update", help="correct a site's details (audited)")
    fix.add_argument("site", metavar="SITE")
    fix.add_argument("--reason", required=True, help="why (kept in the audit trail)")
    fix.add_argument("--name", help="hospital name (signs the site's SMS unless the protocol "
                     "sets sites.<code>.sms_name)")
    fix.add_argument("--tz", help="IANA time zone (for new patients; enrolled ones keep theirs)")
    fix.add_argument("--phone", help="site phone in E.164 (\"\" removes it)")
    fix.add_argument("--json", action="store_true", help="print JSON")
    fix.set_defaults(handler=_update)

    show = site_sub.add_parser("list", help="every site")
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(handler=_list)


async def _add(args: argparse.Namespace, settings: Settings) -> int:
    async with open_database(settings) as database:
        with refused():
            async with database.write() as session:
                site = await add_site(session, site_id=args.site, name=args.name, tz=args.tz,
                                      phone=args.phone, now=now(), actor=cli_actor())
    data = {"site": site.id, "name": site.name, "tz": site.tz, "phone": site.phone}
    emit(data, args.json, f"added site {site.id} ({site.name}, {site.tz})")
    return 0


async def _update(args: argparse.Namespace, settings: Settings) -> int:
    protocol = load_protocol(settings.protocol)
    async with open_database(settings) as database:
        with refused():
            async with database.write() as session:
                changes = await update_site(session, protocol, args.site, reason=args.reason,
                                            now=now(), actor=cli_actor(), name=args.name,
                                            tz=args.tz, phone=args.phone)
    emit({"site": changes.entity_id, **changes.as_dict()}, args.json, describe_changes(changes))
    return 0


async def _list(args: argparse.Namespace, settings: Settings) -> int:
    async with open_database(settings) as database, database.read() as session:
        rows = await listing.sites(session)
    emit(rows, args.json, table(rows, ["site", "name", "tz", "phone", "patients",
                                       "active_patients", "staff"], "no sites"))
    return 0

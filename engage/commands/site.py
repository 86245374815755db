"""`engage site add|update|list`: the study sites."""

from __future__ import annotations

import argparse

from engage.commands._args import command, command_group
from engage.commands.support import cli_actor, describe_changes, emit, now, reading, table, writing
from engage.config import Settings
from study import listing
from study.changes import update_site
from study.enrolment import add_site
from trial.protocol import load_protocol


def register(sub: argparse._SubParsersAction) -> None:
    group = command_group(sub, "site", help="study sites")
    add = command(group, "add", _add, help="register a site")
    add.add_argument("site", metavar="SITE", help="site code, e.g. BJ01")
    add.add_argument("--name", required=True, help="hospital name")
    add.add_argument("--tz", required=True, help="IANA time zone, e.g. Asia/Shanghai")
    add.add_argument("--phone", help="site phone in E.164, e.g. +861012345678")

    fix = command(group, "update", _update, help="correct a site's details (audited)",
                  positionals=("SITE",), reason=True)
    fix.add_argument("--name", help="hospital name (signs the site's SMS unless the protocol "
                     "sets sites.<code>.sms_name)")
    fix.add_argument("--tz", help="IANA time zone (for new patients; enrolled ones keep theirs)")
    fix.add_argument("--phone", help="site phone in E.164 (\"\" removes it)")

    command(group, "list", _list, help="every site")


async def _add(args: argparse.Namespace, settings: Settings) -> int:
    async with writing(settings) as session:
        site = await add_site(session, site_id=args.site, name=args.name, tz=args.tz,
                              phone=args.phone, now=now(), actor=cli_actor())
    data = {"site": site.id, "name": site.name, "tz": site.tz, "phone": site.phone}
    emit(data, args.json, f"added site {site.id} ({site.name}, {site.tz})")
    return 0


async def _update(args: argparse.Namespace, settings: Settings) -> int:
    protocol = load_protocol(settings.protocol)
    async with writing(settings) as session:
        changes = await update_site(session, protocol, args.site, reason=args.reason, now=now(),
                                    actor=cli_actor(), name=args.name, tz=args.tz,
                                    phone=args.phone)
    emit({"site": changes.entity_id, **changes.as_dict()}, args.json, describe_changes(changes))
    return 0


async def _list(args: argparse.Namespace, settings: Settings) -> int:
    async with reading(settings) as session:
        rows = await listing.sites(session)
    emit(rows, args.json, table(rows, ["site", "name", "tz", "phone", "patients",
                                       "active_patients", "staff"], "no sites"))
    return 0

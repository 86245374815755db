"""`engage site add`: register a study site."""

from __future__ import annotations

import argparse

from engage.commands.support import cli_actor, emit, now, open_database, refused
from engage.config import Settings
from study.enrolment import add_site


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


async def _add(args: argparse.Namespace, settings: Settings) -> int:
    async with open_database(settings) as database:
        with refused():
            async with database.write() as session:
                site = await add_site(session, site_id=args.site, name=args.name, tz=args.tz,
                                      phone=args.phone, now=now(), actor=cli_actor())
    data = {"site": site.id, "name": site.name, "tz": site.tz, "phone": site.phone}
    emit(data, args.json, f"added site {site.id} ({site.name}, {site.tz})")
    return 0

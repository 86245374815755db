"""`engage staff add|update|deactivate|list`: coordinators, investigators, PIs, monitors,
admins."""

from __future__ import annotations

import argparse

from bot.channels.wecom import WECOM
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
from study.changes import deactivate_staff, set_addresses, update_staff
from study.enrolment import add_staff
from trial.protocol import LANGUAGES, ROLES


def register(sub: argparse._SubParsersAction) -> None:
    staff = sub.add_parser("staff", help="site staff")
    staff_sub = staff.add_subparsers(dest="staff_command", required=True)
    add = staff_sub.add_parser("add", help="register a staff member")
    add.add_argument("--site", help="site code (every role but admin belongs to a site)")
    add.add_argument("--role", required=True, help=f"one of {', '.join(ROLES)}")
    add.add_argument("--name", required=True)
    add.add_argument("--telegram-id", type=int, help="numeric Telegram user id")
    add.add_argument("--phone", help="mobile number in E.164, e.g. +8613812345678")
    add.add_argument("--wecom-userid", help="WeCom (企业微信) userid in the hospital's corp: "
                     "pages and commands in the WeCom app")
    add.add_argument("--language", default="zh", help=f"one of {', '.join(LANGUAGES)}")
    add.add_argument("--json", action="store_true", help="print JSON")
    add.set_defaults(handler=_add)

    fix = staff_sub.add_parser("update", help="correct a staff member's details (audited)")
    fix.add_argument("staff", metavar="STAFF", help="staff number, e.g. 7 (see `staff list`)")
    fix.add_argument("--reason", required=True, help="why (kept in the audit trail)")
    fix.add_argument("--phone", help="mobile number in E.164 (\"\" removes it)")
    fix.add_argument("--telegram-id", type=int, help="numeric Telegram user id (0 removes it)")
    fix.add_argument("--wecom-userid", help="WeCom (企业微信) userid (\"\" removes it)")
    fix.add_argument("--language", help=f"one of {', '.join(LANGUAGES)}")
    fix.add_argument("--role", help=f"one of {', '.join(ROLES)}")
    fix.add_argument("--force", action="store_true", help="accept a staff member with no "
                     "contact route")
    fix.add_argument("--json", action="store_true", help="print JSON")
    fix.set_defaults(handler=_update)

    off = staff_sub.add_parser("deactivate", help="a staff member who left: their buttons and "
                               "commands stop at once, pages go to the others")
    off.add_argument("staff", metavar="STAFF", help="staff number, e.g. 7")
    off.add_argument("--reason", required=True, help="why (kept in the audit trail)")
    off.add_argument("--json", action="store_true", help="print JSON")
    off.set_defaults(handler=_deactivate)

    show = staff_sub.add_parser("list", help="every staff member (admins included)")
    show.add_argument("--site", help="only this site's staff (and the admins)")
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(handler=_list)


async def _add(args: argparse.Namespace, settings: Settings) -> int:
    async with open_database(settings) as database:
        with refused():
            async with database.write() as session:
                staff = await add_staff(session, site_id=args.site, role=args.role,
                                        name=args.name, telegram_id=args.telegram_id,
                                        phone=args.phone, language=args.language, now=now(),
                                        actor=cli_actor())
                if args.wecom_userid:
                    await set_addresses(session, staff, {WECOM: args.wecom_userid}, now=now(),
                                        actor=cli_actor(), reason="staff added")
    data = {"staff_id": staff.id, "site": staff.site_id, "role": staff.role, "name": staff.name,
            "telegram_id": staff.telegram_id, "phone": staff.phone,
            "wecom_userid": args.wecom_userid or None, "language": staff.language}
    where = f"site {staff.site_id}" if staff.site_id else "all sites"
    emit(data, args.json, f"added staff #{staff.id}: {staff.name}, {staff.role} at {where}")
    return 0


async def _update(args: argparse.Namespace, settings: Settings) -> int:
    async with open_database(settings) as database:
        with refused():
            async with database.write() as session:
                changes = await update_staff(
                    session, args.staff, reason=args.reason, now=now(), actor=cli_actor(),
                    phone=args.phone, telegram_id=args.telegram_id, language=args.language,
                    role=args.role, force=args.force,
                    addresses=None if args.wecom_userid is None else {WECOM: args.wecom_userid})
    emit({"staff_id": int(changes.entity_id), **changes.as_dict()}, args.json,
         describe_changes(changes))
    return 0


async def _deactivate(args: argparse.Namespace, settings: Settings) -> int:
    async with open_database(settings) as database:
        with refused():
            async with database.write() as session:
                changes = await deactivate_staff(session, args.staff, reason=args.reason,
                                                 now=now(), actor=cli_actor())
    emit({"staff_id": int(changes.entity_id), **changes.as_dict()}, args.json,
         describe_changes(changes))
    return 0


async def _list(args: argparse.Namespace, settings: Settings) -> int:
    async with open_database(settings) as database, database.read() as session:
        rows = await listing.staff(session, site_id=args.site)
    for row in rows:
        row["wecom_userid"] = row.get("addresses", {}).get(WECOM)
    emit(rows, args.json, table(rows, ["staff_id", "site", "role", "name", "telegram_id",
                                       "phone", "wecom_userid", "language", "active",
                                       "pageable"], "no staff"))
    return 0

"""`engage staff add|update|deactivate|list`: coordinators, investigators, PIs, monitors,
admins."""

from __future__ import annotations

import argparse

from bot.channels.wecom import WECOM
from engage.commands._args import command, command_group
from engage.commands.support import cli_actor, describe_changes, emit, now, reading, table, writing
from engage.config import Settings
from study import listing
from study.changes import Changes, deactivate_staff, set_addresses, update_staff
from study.enrolment import add_staff
from trial.protocol import LANGUAGES, ROLES


def register(sub: argparse._SubParsersAction) -> None:
    group = command_group(sub, "staff", help="site staff")
    add = command(group, "add", _add, help="register a staff member")
    add.add_argument("--site", help="site code (every role but admin belongs to a site)")
    add.add_argument("--role", required=True, help=f"one of {', '.join(ROLES)}")
    add.add_argument("--name", required=True)
    add.add_argument("--telegram-id", type=int, help="numeric Telegram user id")
    add.add_argument("--phone", help="mobile number in E.164, e.g. +8613812345678")
    add.add_argument("--wecom-userid", help="WeCom (企业微信) userid in the hospital's corp: "
                     "pages and commands in the WeCom app")
    add.add_argument("--language", default="zh", help=f"one of {', '.join(LANGUAGES)}")

    fix = command(group, "update", _update, help="correct a staff member's details (audited)",
                  reason=True)
    fix.add_argument("staff", metavar="STAFF", help="staff number, e.g. 7 (see `staff list`)")
    fix.add_argument("--phone", help="mobile number in E.164 (\"\" removes it)")
    fix.add_argument("--telegram-id", type=int, help="numeric Telegram user id (0 removes it)")
    fix.add_argument("--wecom-userid", help="WeCom (企业微信) userid (\"\" removes it)")
    fix.add_argument("--language", help=f"one of {', '.join(LANGUAGES)}")
    fix.add_argument("--role", help=f"one of {', '.join(ROLES)}")
    fix.add_argument("--force", action="store_true", help="accept a staff member with no "
                     "contact route")

    off = command(group, "deactivate", _deactivate, reason=True,
                  help="a staff member who left: their buttons and commands stop at once, "
                  "pages go to the others")
    off.add_argument("staff", metavar="STAFF", help="staff number, e.g. 7")

    show = command(group, "list", _list, help="every staff member (admins included)")
    show.add_argument("--site", help="only this site's staff (and the admins)")


async def _add(args: argparse.Namespace, settings: Settings) -> int:
    async with writing(settings) as session:
        staff = await add_staff(session, site_id=args.site, role=args.role, name=args.name,
                                telegram_id=args.telegram_id, phone=args.phone,
                                language=args.language, now=now(), actor=cli_actor())
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
    async with writing(settings) as session:
        changes = await update_staff(
            session, args.staff, reason=args.reason, now=now(), actor=cli_actor(),
            phone=args.phone, telegram_id=args.telegram_id, language=args.language,
            role=args.role, force=args.force,
            addresses=None if args.wecom_userid is None else {WECOM: args.wecom_userid})
    return _changed(changes, args.json)


async def _deactivate(args: argparse.Namespace, settings: Settings) -> int:
    async with writing(settings) as session:
        changes = await deactivate_staff(session, args.staff, reason=args.reason, now=now(),
                                         actor=cli_actor())
    return _changed(changes, args.json)


def _changed(changes: Changes, as_json: bool) -> int:
    emit({"staff_id": int(changes.entity_id), **changes.as_dict()}, as_json,
         describe_changes(changes))
    return 0


async def _list(args: argparse.Namespace, settings: Settings) -> int:
    async with reading(settings) as session:
        rows = await listing.staff(session, site_id=args.site)
    for row in rows:
        row["wecom_userid"] = row.get("addresses", {}).get(WECOM)
    emit(rows, args.json, table(rows, ["staff_id", "site", "role", "name", "telegram_id",
                                       "phone", "wecom_userid", "language", "active",
                                       "pageable"], "no staff"))
    return 0

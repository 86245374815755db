"""`engage patient enroll|import|pause|resume|withdraw|update|relink|list|show`: enrolment,
corrections and status (all audited), and what is there."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from engage.commands import wechat
from engage.commands._args import command, command_group
from engage.commands.support import (
    CommandError,
    cli_actor,
    describe_changes,
    emit,
    now,
    open_database,
    refused,
    table,
    writing,
)
from engage.config import Settings
from storage.db import Database
from study import listing
from study.changes import find_patient, relink_patient, update_patient
from study.enrolment import change_status, enroll
from study.importing import COLUMNS, RosterError, import_roster
from trial.enrolment import check_enrolment
from trial.protocol import LANGUAGES, load_protocol


def register(sub: argparse._SubParsersAction) -> None:
    group = command_group(sub, "patient", help="enrolled patients")

    enrol = command(group, "enroll", _enroll, help="enrol a patient and print their link code")
    enrol.add_argument("subject", metavar="SUBJECT", help="subject id, e.g. BJ01-001")
    enrol.add_argument("--site", required=True, help="site code")
    enrol.add_argument("--baseline", required=True, help="baseline (week 0) date, YYYY-MM-DD")
    enrol.add_argument("--dose-time", required=True, help="local daily dose time, HH:MM")
    enrol.add_argument("--language", required=True, help=f"one of {', '.join(LANGUAGES)}")
    enrol.add_argument("--phone", help="mobile number in E.164, e.g. +8613812345678")
    enrol.add_argument("--tz", help="IANA time zone (default: the site's)")

    roster = command(
        group, "import", _import, help="enrol every patient of a CSV file, all or none",
        description=f"CSV header: {','.join(COLUMNS)} (phone and tz may be empty)")
    roster.add_argument("file", metavar="FILE.csv", type=Path)

    for action, text in (("pause", "stop messages for a while"), ("resume", "restart messages"),
                         ("withdraw", "withdraw from the study (messages stop for good)")):
        change = command(group, action, _change_status, help=text, positionals=("SUBJECT",),
                         reason=True)
        if action == "withdraw":
            change.add_argument("--yes", action="store_true",
                                help="do not ask for confirmation (for scripts)")
        change.set_defaults(action=action)

    fix = command(group, "update", _update, help="correct a patient's details (audited)",
                  positionals=("SUBJECT",), reason=True)
    fix.add_argument("--dose-time", help="new local daily dose time, HH:MM (from the next dose "
                     "not yet reminded)")
    fix.add_argument("--phone", help="new mobile number in E.164")
    fix.add_argument("--tz", help="new IANA time zone")
    fix.add_argument("--language", help=f"one of {', '.join(LANGUAGES)}")
    fix.add_argument("--baseline", help="corrected baseline date, YYYY-MM-DD (replans visits "
                     "and doses not yet due)")
    fix.add_argument("--force", action="store_true",
                     help="accept a baseline that looks wrong, or after answered doses")

    command(group, "relink", _relink, positionals=("SUBJECT",), reason=True,
            help="end the patient's Telegram link and print a new link code")
    wechat.register_qr(group)  # `engage patient qr`: the WeChat QR code (commands/wechat.py)

    show_all = command(group, "list", _list, help="enrolled patients")
    show_all.add_argument("--site", help="only this site's patients")
    show_all.add_argument("--status", choices=["active", "paused", "withdrawn"])

    command(group, "show", _show, positionals=("SUBJECT",),
            help="one patient: status, channels, reachability, next dose and visit, open alerts")


def _link_hint(code: str, ttl_hours: int) -> str:
    return (f"link code: {code} (single use, valid {ttl_hours} h)\n"
            f"the patient sends /start {code} to the study bot in Telegram, "
            f"or opens https://t.me/<bot username>?start={code}")


async def _enroll(args: argparse.Namespace, settings: Settings) -> int:
    protocol = load_protocol(settings.protocol)
    enrolment, problems = check_enrolment(
        subject=args.subject, site=args.site, baseline_date=args.baseline,
        dose_at=args.dose_time, lang=args.language, phone_number=args.phone, tz=args.tz)
    if enrolment is None:
        for problem in problems[:-1]:
            print(f"error: {problem}", file=sys.stderr)
        raise CommandError(str(problems[-1]))
    async with writing(settings) as session:
        patient, code = await enroll(session, protocol, enrolment, now=now(), actor=cli_actor())
    text = (f"enrolled {patient.subject_id} at site {patient.site_id} (baseline "
            f"{patient.baseline}, dose {patient.dose_time} {patient.tz}, {patient.language})\n"
            + _link_hint(code, protocol.reminders.link_code_ttl_hours))
    emit({"subject_id": patient.subject_id, "link_code": code}, args.json, text)
    return 0


async def _import(args: argparse.Namespace, settings: Settings) -> int:
    protocol = load_protocol(settings.protocol)
    path: Path = args.file
    try:
        text = (await asyncio.to_thread(path.read_bytes)).decode("utf-8-sig")
    except OSError as exc:
        raise CommandError(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise CommandError(f"{path}: not UTF-8 text (save it as \"CSV UTF-8\")") from None
    try:
        async with writing(settings) as session:
            enrolled = await import_roster(session, protocol, text, now=now(),
                                           actor=cli_actor())
    except RosterError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        lines = len({p.line for p in exc.problems})
        raise CommandError(f"{path}: {len(exc.problems)} problem(s) on {lines} line(s); "
                           "nobody was enrolled") from None
    ttl = protocol.reminders.link_code_ttl_hours
    rows = [{"subject_id": e.subject_id, "site": e.site_id, "link_code": e.link_code}
            for e in enrolled]
    text = "\n".join([*(f"{e.subject_id}\t{e.site_id}\tlink code {e.link_code}"
                        for e in enrolled),
                      f"enrolled {len(enrolled)} patient(s); link codes are single use and "
                      f"valid {ttl} h (the patient sends /start CODE to the study bot)"])
    emit(rows, args.json, text)
    return 0


WITHDRAW_EFFECTS = ("every message to the patient stops for good (reminders, visit notices, "
                    "check-ins); their record and history are kept; this cannot be undone")


async def _confirm_withdraw(args: argparse.Namespace, database: Database) -> bool:
    """Say what a withdrawal does and ask on a terminal; scripts must say --yes."""
    if args.yes:
        return True
    if not sys.stdin.isatty():
        raise CommandError("withdraw asks for confirmation: run it on a terminal, or add --yes")
    async with database.read() as session:
        with refused():
            patient = await find_patient(session, args.subject)
            status = patient.status
    print(f"{patient.subject_id} ({status}, site {patient.site_id}) will be withdrawn: "
          f"{WITHDRAW_EFFECTS}.", file=sys.stderr)
    answer = await asyncio.to_thread(input, f"withdraw {patient.subject_id}? [y/N] ")
    return answer.strip().lower() in ("y", "yes")


async def _change_status(args: argparse.Namespace, settings: Settings) -> int:
    async with open_database(settings) as database:
        if args.action == "withdraw" and not await _confirm_withdraw(args, database):
            print("nothing was changed", file=sys.stderr)
            return 1
        with refused():
            async with database.write() as session:
                change = await change_status(session, args.subject.strip(), args.action,
                                             reason=args.reason, now=now(), actor=cli_actor())
    data = {"subject_id": change.subject_id, "old": change.old, "new": change.new,
            "reason": args.reason.strip()}
    emit(data, args.json, f"{change.subject_id}: {change.old} -> {change.new}")
    return 0



async def _update(args: argparse.Namespace, settings: Settings) -> int:
    protocol = load_protocol(settings.protocol)
    async with writing(settings) as session:
        changes = await update_patient(
            session, protocol, args.subject, reason=args.reason, now=now(), actor=cli_actor(),
            dose_time=args.dose_time, phone=args.phone, tz=args.tz, language=args.language,
            baseline=args.baseline, force=args.force)
    data = {"subject_id": changes.entity_id, **changes.as_dict()}
    del data["id"]
    emit(data, args.json, describe_changes(changes))
    return 0


async def _relink(args: argparse.Namespace, settings: Settings) -> int:
    protocol = load_protocol(settings.protocol)
    async with writing(settings) as session:
        changes, code = await relink_patient(session, protocol, args.subject,
                                             reason=args.reason, now=now(), actor=cli_actor())
    ended = "the old Telegram link is ended" if changes.fields else "no Telegram link to end"
    text = (f"{changes.entity_id}: {ended}\n"
            + _link_hint(code, protocol.reminders.link_code_ttl_hours))
    emit({"subject_id": changes.entity_id, "link_code": code,
          "unlinked": bool(changes.fields)}, args.json, text)
    return 0


async def _list(args: argparse.Namespace, settings: Settings) -> int:
    async with open_database(settings) as database, database.write() as session:
        rows = await listing.patients(session, site_id=args.site, status=args.status,
                                      now=now(), actor=cli_actor())
    emit(rows, args.json, table(rows, ["subject_id", "site", "status", "opted_out", "language",
                                       "dose_time", "tz", "telegram", "sms", "route"],
                                "no patients"))
    return 0


def _describe(data: dict[str, Any]) -> str:
    """One patient as a coordinator reads it."""
    dose, visit = data["next_dose"], data["next_visit"]
    reach = {True: "reachable", False: "not reachable"}
    lines = [
        f"{data['subject_id']} at site {data['site']}: {data['status']}"
        + (", opted out" if data["opted_out"] else ""),
        f"  baseline {data['baseline']}; dose {data['dose_time']} {data['tz']}; "
        f"language {data['language']}",
        f"  Telegram: {data['telegram']}, {reach[data['telegram_reachable']]}",
        f"  SMS: {data['phone'] or 'no phone'}, {reach[data['sms_reachable']]}",
        f"  messages go by: {data['route'] or 'nothing (no reachable channel or not active)'}",
        "  next dose: " + (f"{dose['due_at_local']} ({dose['state']})" if dose else "none"),
        "  next visit: " + (f"{visit['visit']} on {visit['date']} (window {visit['window']})"
                            if visit else "none"),
        f"  open alerts: {len(data['open_alerts'])}",
    ]
    lines += [f"    #{a['alert_id']} {a['kind']} {a['tier']} {a['status']} since "
              f"{a['opened_at_local']}: {a['summary']}" for a in data["open_alerts"]]
    return "\n".join(lines)


async def _show(args: argparse.Namespace, settings: Settings) -> int:
    protocol = load_protocol(settings.protocol)
    async with writing(settings) as session:
        data = await listing.patient(session, protocol, args.subject, now=now(),
                                     actor=cli_actor())
    emit(data, args.json, _describe(data))
    return 0

"""`engage visit list|move|done`: a patient's visits by the protocol's names, all audited."""

from __future__ import annotations

import argparse
from typing import Any

from engage.commands._args import command, command_group
from engage.commands.support import CommandError, cli_actor, emit, now, writing
from engage.config import Settings
from storage import audit
from storage.models import Visit
from study import visits
from study.visits import VisitChange
from trial.protocol import load_protocol


def register(sub: argparse._SubParsersAction) -> None:
    group = command_group(sub, "visit", help="study visits of a patient")
    command(group, "list", _list, help="a patient's visits, windows and status",
            positionals=("SUBJECT",))

    move = command(group, "move", _move, positionals=("SUBJECT",), reason=True,
                   help="reschedule a visit (outside its window it is flagged)")
    move.add_argument("visit", metavar="VISIT", help="visit name, e.g. W12")
    move.add_argument("date", metavar="DATE", help="new date, YYYY-MM-DD")

    done = command(group, "done", _done, help="record that a visit took place",
                   positionals=("SUBJECT",))
    done.add_argument("visit", metavar="VISIT", help="visit name, e.g. W12")
    done.add_argument("--date", help="the real visit date, YYYY-MM-DD (default: today, local)")


def visit_data(visit: Visit) -> dict[str, Any]:
    """One visit as the list shows it."""
    return {"visit": visit.name, "target": visit.target_date.isoformat(),
            "window_start": visit.window_start.isoformat(),
            "window_end": visit.window_end.isoformat(),
            "scheduled": visit.scheduled_date.isoformat(), "status": visit.status,
            "done_date": visit.done_date.isoformat() if visit.done_date else None,
            "out_of_window": visit.out_of_window, "revision": visit.revision}


def _flags(visit: Visit) -> str:
    flags = []
    if visit.out_of_window:
        flags.append("OUT OF WINDOW")
    if visit.revision:
        flags.append(f"moved x{visit.revision}")
    return ", ".join(flags)


def visit_table(subject_id: str, rows: list[dict[str, Any]], flags: list[str]) -> str:
    """The readable list of a patient's visits."""
    header = ("VISIT", "TARGET", "WINDOW", "SCHEDULED", "STATUS", "DONE", "FLAGS")
    lines = [header] + [
        (r["visit"], r["target"], f"{r['window_start']}..{r['window_end']}", r["scheduled"],
         r["status"], r["done_date"] or "-", flag) for r, flag in zip(rows, flags, strict=True)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
            for line in lines]
    return f"visits of {subject_id}\n" + "\n".join(text)


async def _list(args: argparse.Namespace, settings: Settings) -> int:
    async with writing(settings) as session:
        at = now()
        patient = await visits.find_patient(session, args.subject)
        rows = await visits.patient_visits(session, patient.id)
        audit.record(session, at=at, actor=cli_actor(), action="query", entity="patients",
                     entity_id=patient.subject_id, field="visit list")
    data = [visit_data(v) for v in rows]
    emit({"subject_id": patient.subject_id, "visits": data}, args.json,
         visit_table(patient.subject_id, data, [_flags(v) for v in rows]))
    return 0


def change_data(change: VisitChange) -> dict[str, Any]:
    """A move or completion as JSON."""
    return {"subject_id": change.subject_id, "visit": change.visit,
            "old_date": change.old_date.isoformat() if change.old_date else None,
            "new_date": change.new_date.isoformat(),
            "window_start": change.window_start.isoformat(),
            "window_end": change.window_end.isoformat(),
            "out_of_window": change.out_of_window,
            "cancelled_notices": change.cancelled_notices}


def _flag_text(change: VisitChange) -> str:
    if not change.out_of_window:
        return ""
    return (f"\nWARNING: outside the window {change.window_start} to {change.window_end}; "
            "flagged as out of window")


async def _move(args: argparse.Namespace, settings: Settings) -> int:
    protocol = load_protocol(settings.protocol)
    if not args.reason.strip():
        raise CommandError("reason: a reason is required")
    async with writing(settings) as session:
        new_date = visits.parse_date(args.date)
        patient = await visits.find_patient(session, args.subject)
        change = await visits.move_visit(session, protocol, patient, args.visit, new_date,
                                         reason=args.reason, now=now(), actor=cli_actor())
    text = (f"moved {change.subject_id} {change.visit} from {change.old_date} to "
            f"{change.new_date}; notices follow the new date" + _flag_text(change))
    emit(change_data(change), args.json, text)
    return 0


async def _done(args: argparse.Namespace, settings: Settings) -> int:
    protocol = load_protocol(settings.protocol)
    async with writing(settings) as session:
        day = visits.parse_date(args.date) if args.date else None
        patient = await visits.find_patient(session, args.subject)
        change = await visits.mark_done(session, protocol, patient, args.visit, done_date=day,
                                        now=now(), actor=cli_actor())
    text = f"{change.subject_id} {change.visit} done on {change.new_date}" + _flag_text(change)
    emit(change_data(change), args.json, text)
    return 0

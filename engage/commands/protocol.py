"""`engage protocol check FILE`: validate a protocol file and print its schedule; with WeChat
templates (ENGAGE_WECHAT_TEMPLATES or --wechat-templates), validate their ids and field mapping
too (`bot.channels.wechat.templates.problems`: routed from here, as messages/ does not know the
channels)."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from bot.channels.wechat import templates as wechat_templates
from engage.commands.support import emit
from engage.config import Settings
from messages import catalogue
from messages.sms import check_sms
from study.visits import notice_problems
from trial.protocol import Protocol, VisitTemplate, load_protocol


def register(sub: argparse._SubParsersAction) -> None:
    protocol = sub.add_parser("protocol", help="the protocol file")
    protocol_sub = protocol.add_subparsers(dest="protocol_command", required=True)
    check = protocol_sub.add_parser("check", help="validate a protocol file, print its schedule")
    check.add_argument("file", metavar="FILE", type=Path)
    check.add_argument("--wechat-templates", metavar="FILE", type=Path, default=None,
                       help="the WeChat template file to check (default: "
                            "ENGAGE_WECHAT_TEMPLATES)")
    check.add_argument("--json", action="store_true", help="print JSON")
    check.set_defaults(handler=_check)


def wechat_problems(path: Path | None, *, enabled: bool) -> list[str]:
    """What is wrong with the WeChat template file (none to check: only a problem when the
    channel is on, since reminders and visit notices cannot go without templates)."""
    if path is None:
        if enabled:
            return ["wechat templates: ENGAGE_WECHAT_TEMPLATES is not set, so reminders and "
                    "visit notices cannot go by WeChat (template messages only)"]
        return []
    try:
        loaded = wechat_templates.load(path)
    except wechat_templates.TemplateFileError as exc:
        return [f"wechat templates: {exc}"]
    return wechat_templates.problems(loaded, set(catalogue.message_ids()))


async def _check(args: argparse.Namespace, settings: Settings) -> int:
    # A broken file raises ProtocolError, which the CLI prints field by field.
    protocol = await asyncio.to_thread(load_protocol, args.file)
    # Every patient-bound template rendered with this protocol's own values (its dose labels,
    # its sites' SMS names), with its choice line and signature: a forbidden word or an SMS
    # over its segment budget fails the check.
    problems = [str(p) for p in await asyncio.to_thread(check_sms, protocol)]
    # Visit notices measured whole, with each site's time, place and signature.
    problems += notice_problems(protocol)
    wechat = wechat_problems(args.wechat_templates or settings.wechat_templates,
                             enabled=settings.wechat_enabled)
    data = schedule(protocol)
    data["sms_problems"] = problems
    data["wechat_problems"] = wechat
    text = describe(protocol)
    if problems:
        text += "\nSMS problems with this protocol's values:\n" + "\n".join(
            f"  {p}" for p in problems)
    if wechat:
        text += "\nWeChat template problems:\n" + "\n".join(f"  {p}" for p in wechat)
    emit(data, args.json, text)
    return 1 if problems or wechat else 0


def _visit(visit: VisitTemplate) -> dict[str, Any]:
    return visit.model_dump(mode="json")


def schedule(protocol: Protocol) -> dict[str, Any]:
    """The schedule as plain data (`--json`)."""
    data = protocol.model_dump(mode="json", include={
        "study", "dose", "phases", "reminders", "quiet_hours", "sms", "escalation", "digest"})
    data["dose"]["total_mg"] = protocol.dose.total_mg
    data["visits"] = {
        "notice_days_before": protocol.visits.notice_days_before,
        "notice_time": protocol.visits.notice_time.strftime("%H:%M"),
        "table": [_visit(v) for v in protocol.visits.table],
    }
    return data


def _clock(value: Any) -> str:
    return str(value.strftime("%H:%M"))


def _yes(flag: bool) -> str:
    return "yes" if flag else "-"


def describe(protocol: Protocol) -> str:
    """The schedule as a study coordinator reads it."""
    study, dose, rem = protocol.study, protocol.dose, protocol.reminders
    ids = ", ".join(i for i in (study.registry_id, study.protocol_id) if i)
    lines = [
        f"{study.id}" + (f" ({ids})" if ids else "") + f": {study.end_week} weeks",
        f"dose: {dose.capsules} x {dose.strength_mg:g} mg = {dose.total_mg:g} mg once daily; "
        f"a forgotten dose is taken only if at least "
        f"{dose.missed_dose_take_if_hours_before_next} h remain before the next",
        "phases:",
    ]
    for phase in protocol.phases:
        label = dose.label[phase.dose_label]
        weeks = f"weeks {phase.start_week}-{phase.end_week}"
        lines.append(f"  {phase.name:<12} {weeks:<12} label: {label.zh} / {label.en}")
    lines += [
        f"reminders: at the dose time; follow-up after {rem.follow_up_minutes} min; cut-off "
        f"after {rem.cutoff_minutes} min; snooze {rem.snooze_minutes} min (at most "
        f"{rem.max_snoozes}); link codes valid {rem.link_code_ttl_hours} h",
        f"quiet hours: {_clock(protocol.quiet_hours.start)}-{_clock(protocol.quiet_hours.end)} "
        "(routine messages wait; safety messages never do)",
        f"SMS: at most {protocol.sms.daily_cap} per recipient per day",
        f"escalation: {' -> '.join(protocol.escalation.chain)}; acknowledge within "
        f"{protocol.escalation.ack_timeout_minutes.emergency} min (emergency), "
        f"{protocol.escalation.ack_timeout_minutes.same_day} min (same day)",
        f"digest: daily at {_clock(protocol.digest.time)}",
        f"visit notices: {', '.join(str(d) for d in protocol.visits.notice_days_before)} "
        f"day(s) before, at {_clock(protocol.visits.notice_time)}",
        "visits:",
        f"  {'visit':<6}{'week':>5}{'day':>6}  {'window':<9}{'fasting':<9}"
        f"{'bring medication':<18}{'hold dose':<11}notice",
    ]
    for v in protocol.visits.table:
        window = f"-{v.window_minus}/+{v.window_plus}"
        lines.append(f"  {v.name:<6}{v.week:>5}{v.day:>6}  {window:<9}{_yes(v.fasting):<9}"
                     f"{_yes(v.bring_medication):<18}{_yes(v.hold_dose):<11}{_yes(v.notify)}")
    usual = protocol.visits.usual_time
    lines.append("hold dose (confirm with the protocol): "
                 + (f"on for {', '.join(v.name for v in protocol.visits.table if v.hold_dose)}; "
                    f"only doses due before {_clock(usual)}, never at W0 or once the visit is "
                    "done" if any(v.hold_dose for v in protocol.visits.table) and usual
                    else "off"))
    if protocol.sms.one_way_sites:
        sites = [f"{code} (phone {protocol.sites[code].phone or 'missing'})"
                 if code in protocol.sites else f"{code} (phone missing)"
                 for code in protocol.sms.one_way_sites]
        lines.append(f"one-way SMS (no replies; no choice line, the site's phone and 120 "
                     f"instead) at: {', '.join(sites)}")
    return "\n".join(lines)

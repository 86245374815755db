"""`engage oncall set|end|show`: a site's on-call rota (who is paged first, by weekday and local
time, or over a dated period such as a holiday)."""

from __future__ import annotations

import argparse

from engage.commands._args import command, command_group
from engage.commands.support import cli_actor, emit, now, parse_instant, reading, table, writing
from engage.config import Settings
from study import oncall
from trial.protocol import load_protocol


def register(sub: argparse._SubParsersAction) -> None:
    group = command_group(sub, "oncall", help="a site's on-call rota: who is paged first")
    put = command(group, "set", _set, positionals=("SITE",),
                  help="add a rule: WHO on --days at --hours (weekly), or --from/--to (dated)")
    put.add_argument("who", metavar="ROLE|STAFF",
                     help="coordinator, investigator, pi, or a staff number (see `staff list`)")
    put.add_argument("--days", help="weekdays, weekend, all, mon-fri, sat,sun (default all)")
    put.add_argument("--hours", help="local HH:MM-HH:MM; 18:00-08:00 runs overnight "
                     "(default the whole day)")
    put.add_argument("--from", dest="period_from", help="local start of a dated period, "
                     "e.g. 2026-10-01 or 2026-10-01T08:00 (a holiday, a cover)")
    put.add_argument("--to", dest="period_to", help="local end of the dated period")
    put.add_argument("--reason", default="on-call rota", help="kept in the audit trail")

    end = command(group, "end", _end, positionals=("SITE",),
                  help="end one rule (or all: the protocol's default rota applies again)")
    end.add_argument("rule", metavar="RULE", nargs="?", type=int,
                     help="the rule number (see `oncall show`); omitted: every rule")
    end.add_argument("--reason", required=True, help="kept in the audit trail")

    show = command(group, "show", _show, help="the site's rota and who is on call",
                   positionals=("SITE",))
    show.add_argument("--at", help="an instant (ISO 8601, UTC unless an offset is given); "
                      "default now")


async def _set(args: argparse.Namespace, settings: Settings) -> int:
    async with writing(settings) as session:
        row = await oncall.set_rule(
            session, site_id=args.site, who=args.who, days=args.days, hours=args.hours,
            period_from=args.period_from, period_to=args.period_to, now=now(),
            actor=cli_actor(), reason=args.reason)
    who = f"staff #{row.staff_id}" if row.staff_id else row.role
    emit({"rule": row.id, "site": row.site_id, "who": who}, args.json,
         f"rule #{row.id} added to site {row.site_id}'s rota: {who}")
    return 0


async def _end(args: argparse.Namespace, settings: Settings) -> int:
    async with writing(settings) as session:
        count = await oncall.end_rules(session, site_id=args.site, rule_id=args.rule, now=now(),
                                       actor=cli_actor(), reason=args.reason)
    emit({"site": args.site, "ended": count}, args.json, f"{count} rules ended")
    return 0


async def _show(args: argparse.Namespace, settings: Settings) -> int:
    protocol = load_protocol(settings.protocol)
    at = parse_instant(args.at)
    async with reading(settings) as session:
        data = await oncall.show(session, protocol, args.site, at)
    rules = data["rules"]
    assert isinstance(rules, list)
    text = (f"site {data['site']} ({data['source']} rota), {data['at_local']} {data['tz']} "
            f"({data['at_utc']} UTC): on call {data['on_call'] or 'nobody (the chain)'}\n"
            + table(rules, ["rule", "who", "days", "hours", "from_utc", "to_utc"], "no rules"))
    emit(data, args.json, text)
    return 0

"""A site's on-call rota in the database: set, end, show, and who is on call at an instant.

A site with rules of its own (`engage oncall set`) uses only those; a site without any uses the
protocol's `[[escalation.oncall]]` defaults. Rules are ended, never deleted; every change is
audited. The precedence between rules is trial.oncall's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage import audit
from storage.audit import Actor
from storage.models import OnCallRule, Site, Staff
from trial.oncall import RotaError, Rule, days_text, on_call, parse_days, parse_hours
from trial.protocol import Protocol

SITE_ROLES = ("coordinator", "investigator", "pi")


class OnCallError(ValueError):
    """A rota change that cannot be made (unknown site, staff of another site, bad times)."""


@dataclass(frozen=True)
class OnCall:
    """Who is on call at a site at an instant, and by which rule."""

    who: str | None  # a role, `staff:ID`, or None (the chain starts at its first level)
    rule: Rule | None
    source: str  # site|protocol|none


def _clock(text: str) -> time:
    hour, _, minute = text.partition(":")
    return time(int(hour), int(minute))


def _who(row: OnCallRule) -> str:
    return f"staff:{row.staff_id}" if row.staff_id is not None else str(row.role)


def _rule(row: OnCallRule) -> Rule:
    period = ((row.period_from, row.period_to)
              if row.period_from is not None and row.period_to is not None else None)
    return Rule(_who(row), frozenset(int(d) for d in row.weekdays), _clock(row.start),
                _clock(row.end), period, row.id)


def protocol_rules(protocol: Protocol) -> list[Rule]:
    """The protocol's default rota."""
    rules = []
    for n, default in enumerate(protocol.escalation.oncall):
        start, end = parse_hours(default.hours)
        rules.append(Rule(default.who, parse_days(default.days), start, end, None, n))
    return rules


async def site_rules(session: AsyncSession, site_id: str) -> list[OnCallRule]:
    """A site's rules still in force, oldest first."""
    return list((await session.execute(select(OnCallRule).where(
        OnCallRule.site_id == site_id, OnCallRule.ended_at.is_(None))
        .order_by(OnCallRule.id))).scalars())


async def rules_for(session: AsyncSession, protocol: Protocol,
                    site_id: str) -> tuple[list[Rule], str]:
    """The rules that decide a site's on-call person, and whose they are (site, protocol, or
    site+protocol: the site's dated periods over the protocol's weekly pattern)."""
    rules = [_rule(r) for r in await site_rules(session, site_id)]
    # The site's weekly pattern replaces the protocol's; dated periods apply on top of either.
    if any(r.period is None for r in rules):
        return rules, "site"
    return [*rules, *protocol_rules(protocol)], "site+protocol" if rules else "protocol"


async def who_is_on_call(session: AsyncSession, protocol: Protocol, site: Site,
                         at: datetime) -> OnCall:
    """Who is paged first at the site at instant `at`."""
    rules, source = await rules_for(session, protocol, site.id)
    rule = on_call(rules, at, ZoneInfo(site.tz), protocol.escalation.holidays)
    if rule is None:
        return OnCall(None, None, "none")
    return OnCall(rule.who, rule, source)


async def _target(session: AsyncSession, site_id: str, who: str) -> tuple[str | None, int | None]:
    who = who.strip().lower().lstrip("#")
    if who in SITE_ROLES:
        return who, None
    if who.isdigit():
        staff = await session.get(Staff, int(who))
        if staff is None or not staff.active or staff.site_id != site_id:
            raise OnCallError(f"staff #{who} is no active staff member of site {site_id}")
        return None, staff.id
    raise OnCallError(f"who: {who!r} is neither a role ({', '.join(SITE_ROLES)}) nor a staff "
                      "number")


def _local(text: str, tz: ZoneInfo) -> datetime:
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise OnCallError(f"{text!r} is not a local date or date and time "
                          "(2026-10-01 or 2026-10-01T08:00)") from exc
    return (moment if moment.tzinfo else moment.replace(tzinfo=tz)).astimezone(UTC)


async def set_rule(session: AsyncSession, *, site_id: str, who: str, days: str | None = None,
                   hours: str | None = None, period_from: str | None = None,
                   period_to: str | None = None, now: datetime, actor: Actor,
                   reason: str) -> OnCallRule:
    """Add a rule to a site's rota: a weekly pattern (days, hours) or a dated period (local
    `--from`/`--to`); audited with its reason."""
    site = await session.get(Site, site_id)
    if site is None:
        raise OnCallError(f"no site {site_id!r}")
    role, staff_id = await _target(session, site_id, who)
    tz = ZoneInfo(site.tz)
    try:
        weekdays = parse_days(days or "all")
        start, end = parse_hours(hours or "00:00-00:00")
    except RotaError as exc:
        raise OnCallError(str(exc)) from None
    begin = finish = None
    if period_from or period_to:
        if not (period_from and period_to):
            raise OnCallError("a dated period needs both --from and --to")
        if days or hours:
            raise OnCallError("a dated period takes no --days or --hours")
        begin, finish = _local(period_from, tz), _local(period_to, tz)
        if finish <= begin:
            raise OnCallError("--to must be after --from")
    row = OnCallRule(site_id=site_id, role=role, staff_id=staff_id,
                     weekdays="".join(str(d) for d in sorted(weekdays)),
                     start=f"{start:%H:%M}", end=f"{end:%H:%M}", period_from=begin,
                     period_to=finish, created_at=now, ended_at=None)
    await audit.create(session, row, at=now, actor=actor, reason=reason)
    return row


async def end_rules(session: AsyncSession, *, site_id: str, rule_id: int | None, now: datetime,
                    actor: Actor, reason: str) -> int:
    """End one rule of a site's rota (or all of them: the protocol's defaults apply again)."""
    rows = [r for r in await site_rules(session, site_id) if rule_id in (None, r.id)]
    if rule_id is not None and not rows:
        raise OnCallError(f"site {site_id} has no rule #{rule_id} in force")
    for row in rows:
        audit.change(session, row, at=now, actor=actor, reason=reason, ended_at=now)
    return len(rows)


def describe_rule(rule: Rule) -> dict[str, object]:
    """A rule as the CLI and /oncall show it."""
    if rule.period is not None:
        when = {"from_utc": rule.period[0].isoformat(), "to_utc": rule.period[1].isoformat()}
    else:
        when = {"days": days_text(rule.weekdays),
                "hours": f"{rule.start:%H:%M}-{rule.end:%H:%M}"}
    return {"rule": rule.order, "who": rule.who, **when}


async def show(session: AsyncSession, protocol: Protocol, site_id: str,
               at: datetime) -> dict[str, object]:
    """A site's rota and who is on call at `at` (local time with UTC beside it)."""
    site = await session.get(Site, site_id)
    if site is None:
        raise OnCallError(f"no site {site_id!r}")
    rules, source = await rules_for(session, protocol, site_id)
    current = await who_is_on_call(session, protocol, site, at)
    tz = ZoneInfo(site.tz)
    return {"site": site_id, "tz": site.tz, "source": source,
            "at_local": at.astimezone(tz).strftime("%Y-%m-%d %H:%M"),
            "at_utc": at.astimezone(UTC).strftime("%Y-%m-%d %H:%M"),
            "on_call": current.who, "rules": [describe_rule(r) for r in rules]}

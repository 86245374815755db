"""Staff alert commands: /alerts, /ack ID, /resolve ID NOTE and the Acknowledge/Resolve buttons;
/sae ID reported (and its button), /oncall, /reviewed ID|all.

Scoped to the staff member's site (an admin sees all): another site's alert is "not found",
exactly like one that does not exist. Monitors read, never act. Every action is audited by
study.alerts with the staff member as actor.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from bot.staff_commands import CommandRouter
from messages import catalogue
from messages.actions import AlertAction
from messages.channel import Choice
from storage.audit import Actor
from storage.models import Alert, Site, Staff
from study import alerts, reports, staff_access
from study.alerts import AlertError
from study.oncall import who_is_on_call
from study.replies import Reply
from trial.protocol import Protocol

router = CommandRouter("alerts")


def _language(staff: Staff) -> str:
    return catalogue.reader_language(staff.language)


def _buttons(staff: Staff, alert: Alert) -> tuple[Choice, ...]:
    if not staff_access.can_acknowledge(staff, alert.site_id) or alert.status == alerts.RESOLVED:
        return ()
    return (Choice("alert.button_ack", AlertAction("ack", alert.id).pack()),
            Choice("alert.button_resolve", AlertAction("resolve", alert.id).pack()))


def _error(error: AlertError) -> Reply:
    return Reply(f"alert.error_{error.code}", {"id": error.alert_id or "?"})


def _alert_id(text: str) -> int | None:
    text = text.strip().lstrip("#")
    return int(text) if text.isdigit() and len(text) < 10 else None


@router.command("alerts")
async def list_alerts(session: AsyncSession, protocol: Protocol, staff: Staff, args: str, *,
                      now: datetime) -> list[Reply]:
    """/alerts: unresolved alerts of the staff member's site (every site for an admin)."""
    found = await alerts.visible(session, staff, now=now)
    if not found:
        return [Reply("alert.list_empty")]
    replies = [Reply("alert.list_header", {"count": len(found)})]
    for alert in found:
        params = await alerts.describe(session, alert, _language(staff))
        replies.append(Reply("alert.list_item", params, _buttons(staff, alert)))
    return replies


@router.command("ack")
async def ack(session: AsyncSession, protocol: Protocol, staff: Staff, args: str, *,
              now: datetime) -> list[Reply]:
    """/ack ID: take responsibility for an alert; its escalation stops."""
    alert_id = _alert_id(args)
    if alert_id is None:
        return [Reply("alert.usage_ack")]
    try:
        alert, new = await alerts.acknowledge(session, staff, alert_id, now=now)
    except AlertError as error:
        return [_error(error)]
    message = "alert.acknowledged" if new else "alert.already_acknowledged"
    return [Reply(message, {"id": alert.id}, (Choice("alert.button_resolve",
                                                     AlertAction("resolve", alert.id).pack()),))]


@router.command("resolve")
async def resolve(session: AsyncSession, protocol: Protocol, staff: Staff, args: str, *,
                  now: datetime) -> list[Reply]:
    """/resolve ID NOTE: close an alert with what was done; an empty note is refused."""
    first, _, note = args.strip().partition(" ")
    alert_id = _alert_id(first)
    if alert_id is None:
        return [Reply("alert.usage_resolve")]
    try:
        alert = await alerts.resolve(session, staff, alert_id, note, now=now)
    except AlertError as error:
        return [_error(error)]
    return [Reply("alert.resolved", {"id": alert.id})]


@router.action(AlertAction, verb="ack")
async def ack_button(session: AsyncSession, protocol: Protocol, staff: Staff,
                     action: AlertAction, *, now: datetime) -> list[Reply]:
    """The Acknowledge button."""
    return await ack(session, protocol, staff, str(action.alert_id), now=now)


@router.action(AlertAction, verb="resolve")
async def resolve_button(session: AsyncSession, protocol: Protocol, staff: Staff,
                         action: AlertAction, *, now: datetime) -> list[Reply]:
    """The Resolve button: `/resolve ID` without a note, so the answer says how to send one
    (or why the alert cannot be resolved by this staff member)."""
    return await resolve(session, protocol, staff, str(action.alert_id), now=now)


@router.command("sae")
async def sae(session: AsyncSession, protocol: Protocol, staff: Staff, args: str, *,
              now: datetime) -> list[Reply]:
    """/sae ID reported: the SAE candidate was reported to the sponsor; its reminders stop."""
    first, _, word = args.strip().partition(" ")
    alert_id = _alert_id(first)
    if alert_id is None or word.strip().lower() not in ("reported", "已报告", "报告"):
        return [Reply("alert.usage_sae")]
    try:
        alert, new = await alerts.record_sae_reported(session, staff, alert_id, now=now)
    except AlertError as error:
        return [_error(error)]
    return [Reply("alert.sae_reported" if new else "alert.sae_already_reported",
                  {"id": alert.id})]


@router.action(AlertAction, verb="sae_reported")
async def sae_button(session: AsyncSession, protocol: Protocol, staff: Staff,
                     action: AlertAction, *, now: datetime) -> list[Reply]:
    """The Reported-to-sponsor button of an SAE reminder."""
    return await sae(session, protocol, staff, f"{action.alert_id} reported", now=now)


@router.command("oncall")
async def oncall_now(session: AsyncSession, protocol: Protocol, staff: Staff, args: str, *,
                     now: datetime) -> list[Reply]:
    """/oncall [SITE]: who is paged first at the staff member's site now."""
    site_id = args.strip().upper() or staff.site_id
    if not site_id or not staff_access.can_view(staff, site_id):
        return [Reply("staff.not_found", {"query": site_id or "-"})]
    site = await session.get(Site, site_id)
    if site is None:
        return [Reply("staff.not_found", {"query": site_id or "-"})]
    current = await who_is_on_call(session, protocol, site, now)
    tz = ZoneInfo(site.tz)
    when: dict[str, object] = {
        "site": site.id, "local": alerts.local_text(now, tz), "utc": alerts.utc_text(now)}
    if current.who is None:
        return [Reply("alert.oncall_nobody", when)]
    language = _language(staff)
    if current.who.startswith("staff:"):
        person = await session.get(Staff, int(current.who.removeprefix("staff:")))
        who = catalogue.render("alert.oncall_staff", language, id=person.id if person else "?",
                               name=person.name if person else "?")
    else:
        who = catalogue.render(f"alert.oncall_role_{current.who}", language)
    return [Reply("alert.oncall_now", {**when, "who": who})]


@router.command("reviewed")
async def reviewed(session: AsyncSession, protocol: Protocol, staff: Staff, args: str, *,
                   now: datetime) -> list[Reply]:
    """/reviewed ID|all: the staff member reviewed a routine report (all: every unreviewed
    report of their site); recorded with who and when."""
    word = args.strip().lower().lstrip("#")
    if staff.role in staff_access.READ_ONLY_ROLES:  # monitors read, never act
        return [Reply("alert.error_not_permitted", {"id": word or "?"})]
    site = None if staff_access.sees_all_sites(staff) else staff.site_id
    pending = await reports.unreviewed(session, site)
    if word == "all":
        chosen = pending
    elif word.isdigit() and len(word) < 10:
        chosen = [r for r in pending if r.id == int(word)]
        if not chosen:
            return [Reply("alert.report_not_found", {"id": word})]
    else:
        return [Reply("alert.usage_reviewed")]
    count = await reports.mark_reviewed(session, chosen, staff_id=staff.id, now=now,
                                        actor=Actor.staff(staff.id),
                                        reason=f"/reviewed {word}")
    return [Reply("alert.reports_reviewed", {"count": count})]


@router.action(AlertAction, verb="reviewed")
async def reviewed_button(session: AsyncSession, protocol: Protocol, staff: Staff,
                          action: AlertAction, *, now: datetime) -> list[Reply]:
    """The digest's "Listed reports reviewed" button (`alert:reviewed:N`, N the newest report
    it listed): every unreviewed report of the staff member's site up to report N."""
    newest = action.alert_id
    if staff.role in staff_access.READ_ONLY_ROLES:
        return [Reply("alert.error_not_permitted", {"id": str(newest)[:10]})]
    site = None if staff_access.sees_all_sites(staff) else staff.site_id
    chosen = [r for r in await reports.unreviewed(session, site) if r.id <= newest]
    count = await reports.mark_reviewed(session, chosen, staff_id=staff.id, now=now,
                                        actor=Actor.staff(staff.id),
                                        reason="digest button: listed reports reviewed")
    return [Reply("alert.reports_reviewed", {"count": count})]


"""Staff alert commands: /alerts, /ack ID, /resolve ID NOTE and the Acknowledge/Resolve buttons.

Scoped to the staff member's site (an admin sees all): another site's alert is "not found",
exactly like one that does not exist. Monitors read, never act. Every action is audited by
study.alerts with the staff member as actor.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from bot.channels import Choice
from bot.staff_commands import register_action, register_command
from storage.models import Alert, Staff
from study import alerts, staff_access
from study.alerts import AlertError
from study.replies import Reply
from trial.protocol import Protocol


def _language(staff: Staff) -> str:
    return staff.language if staff.language in ("zh", "en") else "zh"


def _buttons(staff: Staff, alert: Alert) -> tuple[Choice, ...]:
    if not staff_access.can_acknowledge(staff, alert.site_id) or alert.status == alerts.RESOLVED:
        return ()
    return (Choice("alert.button_ack", f"alert:ack:{alert.id}"),
            Choice("alert.button_resolve", f"alert:resolve:{alert.id}"))


def _error(error: AlertError) -> Reply:
    return Reply(f"alert.error_{error.code}", {"id": error.alert_id or "?"})


def _alert_id(text: str) -> int | None:
    text = text.strip().lstrip("#")
    return int(text) if text.isdigit() and len(text) < 10 else None


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
                                                     f"alert:resolve:{alert.id}"),))]


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


async def ack_button(session: AsyncSession, protocol: Protocol, staff: Staff, payload: str, *,
                     now: datetime) -> list[Reply]:
    """The Acknowledge button."""
    return await ack(session, protocol, staff, payload, now=now)


async def resolve_button(session: AsyncSession, protocol: Protocol, staff: Staff, payload: str,
                         *, now: datetime) -> list[Reply]:
    """The Resolve button: `/resolve ID` without a note, so the answer says how to send one
    (or why the alert cannot be resolved by this staff member)."""
    return await resolve(session, protocol, staff, payload, now=now)


register_command("alerts", list_alerts)
register_command("ack", ack)
register_command("resolve", resolve)
register_action("alert:ack", ack_button)
register_action("alert:resolve", resolve_button)

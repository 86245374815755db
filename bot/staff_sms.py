"""Staff by SMS: `ACK 12` / `确认 12` acknowledges alert 12, `RESOLVE 12 note` / `处理 12 说明`
resolves it, from a staff member's registered phone.

The same site-scope check as the buttons (study.alerts): another site's alert gets exactly the
answer of an alert that does not exist. Anything else is answered with how to use it.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Staff
from study import alerts
from study.alerts import AlertError
from study.replies import Reply
from trial.protocol import Protocol

ACK_WORDS = ("ack", "确认", "確認")
RESOLVE_WORDS = ("resolve", "处理", "處理")
_COMMAND = re.compile(r"^\s*([a-z]+|[\u4e00-\u9fff]+)\s*#?(\d{1,9})(?:\s+(.*))?$",
                      re.S | re.I)


def parse(text: str) -> tuple[str, int, str] | None:
    """`ACK 12` -> ("ack", 12, ""); `处理 12 已电话随访` -> ("resolve", 12, "已电话随访") (the
    note as the staff member wrote it)."""
    match = _COMMAND.match(unicodedata.normalize("NFKC", text).strip())
    if match is None:
        return None
    word, number = match.group(1).lower(), int(match.group(2))
    note = (match.group(3) or "").strip()
    if word in ACK_WORDS:
        return "ack", number, note
    if word in RESOLVE_WORDS:
        return "resolve", number, note
    return None


async def handle(session: AsyncSession, protocol: Protocol, staff: Staff, text: str, *,
                 now: datetime) -> tuple[str, list[Reply]]:
    """One SMS from a staff member: (outcome, replies)."""
    command = parse(text)
    if command is None:
        return "staff_sms_help", [Reply("alert.sms_help")]
    verb, alert_id, note = command
    try:
        if verb == "ack":
            alert, new = await alerts.acknowledge(session, staff, alert_id, now=now)
            message = "alert.acknowledged_sms" if new else "alert.already_acknowledged"
            return "staff_sms_ack", [Reply(message, {"id": alert.id})]
        alert = await alerts.resolve(session, staff, alert_id, note, now=now)
        return "staff_sms_resolve", [Reply("alert.resolved", {"id": alert.id})]
    except AlertError as error:
        return f"staff_sms_{verb}_refused", [
            Reply(f"alert.error_{error.code}", {"id": error.alert_id or alert_id})]

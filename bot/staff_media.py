"""/media N: the photos, voice notes and files of alert N sent to the staff member's chat.

N is the alert number `/alerts` and the digest show (#N). Scoped like every alert command: an
alert of another site is "not found", exactly like one that does not exist. A file a patient
sent on Telegram goes back out by its file_id (the channel resends it: nothing is downloaded);
an MMS picture is a link to Twilio's copy. Each fetch is audited with the references sent.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from bot.staff_commands import CommandRouter
from messages import catalogue
from storage import audit
from storage.audit import Actor
from storage.models import Patient, Staff
from study import alerts, media
from study.alerts import AlertError
from study.replies import Reply
from trial.protocol import Protocol

router = CommandRouter("media")


def _alert_id(text: str) -> int | None:
    text = text.strip().lstrip("#")
    return int(text) if text.isdigit() and len(text) < 10 else None


@router.command("media")
async def media_of_alert(session: AsyncSession, protocol: Protocol, staff: Staff, args: str, *,
                         now: datetime) -> list[Reply]:
    """/media N: each file of alert N, resent to this chat with a line saying what it is."""
    alert_id = _alert_id(args)
    if alert_id is None:
        return [Reply("media.staff_usage")]
    try:
        alert = await alerts.find(session, staff, alert_id)
    except AlertError as error:
        return [Reply(f"alert.error_{error.code}", {"id": error.alert_id or "?"})]
    files = (await media.of_alert(session, alert))[:media.FORWARD_LIMIT]
    if not files:
        return [Reply("media.staff_none", {"id": alert.id})]
    language = catalogue.reader_language(staff.language)
    patient = await session.get(Patient, alert.patient_id) if alert.patient_id else None
    replies = []
    for n, (report, item) in enumerate(files, 1):
        params: dict[str, object] = {
            "id": alert.id, "n": n, "count": len(files),
            "kind": alerts.media_word(item.kind, language),
            "subject": patient.subject_id if patient else "-",
            "received_utc": alerts.utc_text(report.received_at)}
        if item.is_link:  # an MMS picture: Twilio keeps it, the link opens it
            replies.append(Reply("media.staff_forward_link", {**params, "url": item.reference}))
        else:
            replies.append(Reply("media.staff_forward", params, attachment=item))
    audit.record(session, at=now, actor=Actor.staff(staff.id), action="media_forward",
                 entity="alerts", entity_id=str(alert.id),
                 new="; ".join(f"{item.kind} {item.reference}" for _, item in files)[:2000],
                 reason=f"/media {alert.id}")
    return replies

"""What a patient sends besides text: a photo, a voice note, a video, a file, a sticker, a place.

The file stays with the provider: only its reference is stored (the inbound row's payload and the
report's `parsed`), and `/media N` has the channel resend it to a staff member by that reference.
A photo, a voice note, a video or a file opens a routine report and a routine alert of kind
`media` (staff see it in /alerts and the digest); its caption is triaged as the report's text, so
a caption that is urgent pages exactly as the same words typed would (the higher tier wins: the
alert is then the symptom alert, and it carries the file too). Photos sent together (an album)
within `JOIN_WINDOW` join the patient's open media alert. A sticker or a location is answered
and kept, and reported only when words come with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from messages import catalogue
from messages.channel import Media
from storage.audit import Actor
from storage.models import Alert, AlertEvent, Patient, SymptomReport
from study import alerts, reports
from study.replies import Reply
from trial.protocol import Protocol, Tier

KIND = "media"  # the alert kind
SOURCE = "media"  # the report source
# Kinds staff must see: each opens (or joins) a routine report.
REPORTED = frozenset({"photo", "voice", "video", "video_note", "audio", "document",
                      "animation"})
FORWARD_LIMIT = 10  # files one /media N resends (an MMS carries at most 10)


def stored(report: SymptomReport) -> list[Media]:
    """The media references a report keeps."""
    found = (report.parsed or {}).get("media") or []
    return [m for m in map(Media.from_dict, found) if m is not None]


def _kinds(media: Sequence[Media], language: str) -> str:
    seen: list[str] = []
    for item in media:
        if item.kind not in seen:
            seen.append(item.kind)
    return catalogue.render("media.list_separator", language).join(
        alerts.media_word(k, language) for k in seen)


async def receive(session: AsyncSession, protocol: Protocol, patient: Patient,
                  media: Sequence[Media], caption: str, *, now: datetime,
                  inbound_id: int | None) -> tuple[str, list[Reply]]:
    """A message with media from a patient: (outcome, replies)."""
    language = catalogue.reader_language(patient.language)
    kinds: dict[str, object] = {"kinds": _kinds(media, language)}
    if not any(m.kind in REPORTED for m in media):
        if caption.strip():  # words with a sticker or a place: a report like any text
            return "report", [*await reports.receive_report(
                session, protocol, patient, caption, now=now, inbound_id=inbound_id),
                Reply("media.not_reviewed", kinds)]
        return "media_not_reviewed", [Reply("media.not_reviewed", kinds)]
    report = await reports.record_report(
        session, protocol, patient, caption, now=now, inbound_id=inbound_id, source=SOURCE,
        extra={"media": [m.as_dict() for m in media]})
    tier = Tier(report.tier)
    if tier.is_urgent:  # the caption paged: the symptom alert carries the file
        return "report", [await reports.reply_to(session, report), Reply("media.attached", kinds)]
    ongoing = await _joinable(session, patient, now=now)
    if ongoing is not None:
        await alerts.join(session, ongoing, report, now=now)
    else:
        await alerts.open_routine_alert(
            session, site_id=patient.site_id, patient=patient, kind=KIND,
            summary=f"patient sent {', '.join(m.kind for m in media)}", now=now,
            actor=Actor.patient(patient.subject_id), report=report)
    return "report", [Reply("media.received", kinds)]


async def _joinable(session: AsyncSession, patient: Patient, *, now: datetime) -> Alert | None:
    """The patient's media alert opened moments ago and not yet looked at (an album's photos
    arrive as one message each: one alert for them)."""
    return (await session.execute(select(Alert).where(
        Alert.patient_id == patient.id, Alert.kind == KIND, Alert.status == alerts.OPEN,
        Alert.opened_at >= now - alerts.JOIN_WINDOW).order_by(Alert.id.desc()).limit(1))
    ).scalars().first()


async def of_alert(session: AsyncSession, alert: Alert) -> list[tuple[SymptomReport, Media]]:
    """Every file the alert's reports keep (the report that opened it, then those that
    joined it), oldest first."""
    ids = [alert.report_id] if alert.report_id else []
    for detail in (await session.execute(select(AlertEvent.detail).where(
            AlertEvent.alert_id == alert.id, AlertEvent.kind == "report_added")
            .order_by(AlertEvent.step))).scalars():
        number = detail.removeprefix("report ")
        if number.isdigit():
            ids.append(int(number))
    if not ids:
        return []
    found = {r.id: r for r in (await session.execute(select(SymptomReport).where(
        SymptomReport.id.in_(ids)))).scalars()}
    return [(found[i], item) for i in ids if i in found for item in stored(found[i])]

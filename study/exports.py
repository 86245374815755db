"""Rows of the data-management exports: doses, symptom reports, alerts and messages.

Each export is a header and an async stream of rows, oldest first, one row per record, with the
subject id and site, times in UTC (the CSV writer renders datetimes as ISO 8601 UTC) and in the
patient's (or site's) local time, states and reasons. No addresses: staff see subject ids only
(an unregistered sender's alert: the sender masked, `+86139****0021`).
Columns are documented in docs/exports.md.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from messages.channel import attached_media
from storage.models import (
    Alert,
    DoseRecord,
    InboundMessage,
    OutboundMessage,
    Patient,
    Site,
    Staff,
    SymptomReport,
)
from study.senders import mask_sender
from trial.adherence import day_status

Row = Sequence[Any]
BATCH = 1000
_Kept = TypeVar("_Kept", DoseRecord, SymptomReport)  # a table of rows each of one patient
_Message = TypeVar("_Message", OutboundMessage, InboundMessage)


def local(moment: datetime | None, tz: str | None) -> str:
    """A UTC instant as local wall time with its offset, e.g. 2026-03-02T08:00:00+08:00."""
    if moment is None or not tz:
        return ""
    return moment.astimezone(ZoneInfo(tz)).isoformat()


DOSE_COLUMNS = (
    "dose_id", "subject_id", "site", "local_date", "due_at_utc", "due_at_local", "state",
    "day_status", "reminded_at_utc", "followed_up_at_utc", "snoozes", "answered_at_utc",
    "answered_at_local", "closed_at_utc", "skip_reason", "late_answer", "late_answer_at_utc",
    "hold_for_visit",
)


def _with_patient(model: type[_Kept], *order: Any) -> Select[_Kept, str, str, str]:
    """The rows of a patient's table with the patient's subject id, site and time zone, in
    batches."""
    return (select(model, Patient.subject_id, Patient.site_id, Patient.tz)
            .join(Patient, Patient.id == model.patient_id)
            .order_by(*order)
            .execution_options(yield_per=BATCH))


async def dose_rows(session: AsyncSession) -> AsyncIterator[Row]:
    """Every dose record, by subject and day."""
    result = await session.stream(
        _with_patient(DoseRecord, Patient.subject_id, DoseRecord.local_date))
    async for dose, subject, site, tz in result:
        yield (dose.id, subject, site, dose.local_date, dose.due_at, local(dose.due_at, tz),
               dose.state, day_status(dose), dose.reminded_at, dose.followed_up_at, dose.snoozes,
               dose.answered_at, local(dose.answered_at, tz), dose.closed_at, dose.skip_reason,
               dose.late_answer, dose.late_answer_at, dose.hold_for_visit)


SYMPTOM_COLUMNS = (
    "report_id", "subject_id", "site", "received_at_utc", "received_at_local", "source", "tier",
    "reasons", "possible_sae", "temperature_c", "text", "parsed", "reviewed_at_utc",
    "reviewed_by",
)


async def symptom_rows(session: AsyncSession) -> AsyncIterator[Row]:
    """Every symptom report in the order received."""
    result = await session.stream(
        _with_patient(SymptomReport, SymptomReport.received_at, SymptomReport.id))
    async for report, subject, site, tz in result:
        reasons = "; ".join(str(r) for r in report.reasons or [])
        parsed = json.dumps(report.parsed, ensure_ascii=False, sort_keys=True)
        yield (report.id, subject, site, report.received_at, local(report.received_at, tz),
               report.source, report.tier, reasons, report.possible_sae, report.temperature_c,
               report.raw_text, parsed, report.reviewed_at, report.reviewed_by)


ALERT_COLUMNS = (
    "alert_id", "subject_id", "sender", "site", "kind", "tier", "status", "summary",
    "received_at_utc", "received_at_local", "opened_at_utc", "sae_deadline_at_utc", "level",
    "pages",
    "acknowledged_at_utc", "acknowledged_by_staff_id", "acknowledged_by_role",
    "resolved_at_utc", "resolved_by_staff_id", "resolved_by_role", "resolution_note",
    "sae_reported_at_utc", "sae_reported_by_staff_id", "unreached_at_utc",
)


async def alert_rows(session: AsyncSession) -> AsyncIterator[Row]:
    """Every alert in the order opened; local times in the site's time zone."""
    acker, resolver = aliased(Staff), aliased(Staff)
    result = await session.stream(
        select(Alert, Patient.subject_id, Site.tz, acker.role, resolver.role)
        .join(Site, Site.id == Alert.site_id)
        .outerjoin(Patient, Patient.id == Alert.patient_id)
        .outerjoin(acker, acker.id == Alert.acknowledged_by)
        .outerjoin(resolver, resolver.id == Alert.resolved_by)
        .order_by(Alert.opened_at, Alert.id)
        .execution_options(yield_per=BATCH))
    async for alert, subject, tz, ack_role, resolve_role in result:
        # No patient (an unregistered sender): who wrote, masked as staff see it.
        yield (alert.id, subject, mask_sender(alert.sender) if alert.sender else None,
               alert.site_id, alert.kind, alert.tier, alert.status,
               alert.summary, alert.received_at, local(alert.received_at, tz), alert.opened_at,
               alert.sae_deadline_at, alert.level, alert.pages, alert.acknowledged_at,
               alert.acknowledged_by, ack_role, alert.resolved_at, alert.resolved_by,
               resolve_role, alert.resolution_note, alert.sae_reported_at,
               alert.sae_reported_by, alert.unreached_at)


MESSAGE_COLUMNS = (
    "direction", "message_id", "subject_id", "staff_id", "site", "channel", "at_utc",
    "at_local", "template_id", "template_version", "language", "lane", "status", "attempts",
    "sent_at_utc", "handled_at_utc", "error", "text", "has_image", "key", "media",
)


def media_text(payload: Any) -> str:
    """The media references an inbound row keeps (`kind reference`, `; ` between)."""
    found = payload.get("media") if isinstance(payload, dict) else None
    return "; ".join(f"{m.get('kind')} {m.get('reference')}" for m in found or []
                     if isinstance(m, dict))


def _with_sender(model: type[_Message],
                 at: Any) -> Select[_Message, str, str, str, str | None, str]:
    """Messages one way with their patient's subject, time zone and site or their staff
    member's site and its time zone, in time order (`at`), in batches."""
    return (select(model, Patient.subject_id, Patient.tz, Patient.site_id, Staff.site_id, Site.tz)
            .outerjoin(Patient, Patient.id == model.patient_id)
            .outerjoin(Staff, Staff.id == model.staff_id)
            .outerjoin(Site, Site.id == Staff.site_id)
            .order_by(at, model.id)
            .execution_options(yield_per=BATCH))


async def message_rows(session: AsyncSession) -> AsyncIterator[Row]:
    """Every message out (outbox rows, by creation) and then every message in (by receipt)."""
    out = await session.stream(_with_sender(OutboundMessage, OutboundMessage.created_at))
    async for m, subject, patient_tz, patient_site, staff_site, staff_tz in out:
        yield ("out", m.id, subject, m.staff_id, patient_site or staff_site, m.channel,
               m.created_at, local(m.created_at, patient_tz or staff_tz), m.template_id,
               m.template_version, m.language, m.lane, m.status, m.attempts, m.sent_at, None,
               m.last_error, m.body, m.image is not None, m.dedupe_key,
               f"{forwarded.kind} {forwarded.reference}"
               if (forwarded := attached_media(m.image)) is not None else "")
    inbound = await session.stream(_with_sender(InboundMessage, InboundMessage.received_at))
    async for i, subject, patient_tz, patient_site, staff_site, staff_tz in inbound:
        yield ("in", i.id, subject, i.staff_id, patient_site or staff_site, i.channel,
               i.received_at, local(i.received_at, patient_tz or staff_tz), "", "", "", "",
               i.outcome or "", "", None, i.handled_at, "", i.text, False, "",
               media_text(i.payload))

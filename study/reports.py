"""Symptom reports: store, triage, open and page an alert when urgent, answer with the script.

The patient's reply is the tier's scripted text only: the bot never reassures, grades or judges
causality. Routine reports are not paged; they wait for the site's digest.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage import audit
from storage.audit import Actor
from storage.models import Patient, Site, SymptomReport
from study import alerts
from study.replies import Reply
from trial.protocol import Protocol, Tier
from trial.triage import Report, asks_about_allocation, triage

REPLIES = {Tier.EMERGENCY: "report.reply_emergency", Tier.SAME_DAY: "report.reply_same_day",
           Tier.ROUTINE: "report.reply_routine"}


async def record_report(session: AsyncSession, protocol: Protocol, patient: Patient, text: str,
                        *, now: datetime, inbound_id: int | None, source: str = "free_text",
                        temperature_c: float | None = None,
                        answers: Mapping[str, Mapping[str, int]] | None = None,
                        extra: Mapping[str, object] | None = None,
                        free_text: bool = True) -> SymptomReport:
    """Store and triage a report; urgent tiers open an alert that pages the site at once.

    `free_text=False`: the text is only stored (a questionnaire's summary of its answers), and
    the answers and reading are triaged by their own rules; its words are not the patient's.
    """
    triaged = Report(text if free_text else "", temperature_c, answers or {})
    assessment = triage(triaged, protocol.triage)
    parsed = {**assessment.parsed(), **({"answers": dict(answers)} if answers else {}),
              **(dict(extra) if extra else {})}
    report = SymptomReport(
        patient_id=patient.id, inbound_id=inbound_id, source=source, raw_text=text,
        parsed=parsed, temperature_c=assessment.temperature_c, tier=assessment.tier.value,
        reasons=[r.as_dict() for r in assessment.reasons], possible_sae=assessment.possible_sae,
        received_at=now, reviewed_in_digest_at=None)
    await audit.create(session, report, at=now, actor=Actor.patient(patient.subject_id),
                       reason=source)
    if assessment.tier.is_urgent:
        ongoing = await alerts.joinable(session, patient, assessment.tier,
                                        possible_sae=assessment.possible_sae, now=now)
        if ongoing is not None:
            await alerts.join(session, ongoing, report, now=now)
            return report
        await alerts.open_alert(session, protocol, site_id=patient.site_id, patient=patient,
                                kind="symptom", tier=assessment.tier, now=now, received_at=now,
                                report=report, possible_sae=assessment.possible_sae)
    return report


async def reply_to(session: AsyncSession, report: SymptomReport) -> Reply:
    """The tier's script, unless the alert reached nobody at the site: then the patient is told
    to call the site's phone (when it has one) or 120, never that the team was alerted."""
    tier = Tier(report.tier)
    if tier.is_urgent:
        alert = await alerts.of_report(session, report)
        if alert is not None and alert.unreached_at is not None:
            site = await session.get(Site, alert.site_id)
            if site is not None and site.phone:
                return Reply("report.reply_unreached", {"phone": site.phone}, safety=True)
            return Reply("report.reply_unreached_no_phone", safety=True)
    return scripted_reply(tier)


def scripted_reply(tier: Tier) -> Reply:
    """The tier's scripted reply (urgent ones in the safety lane)."""
    return Reply(REPLIES[tier], safety=tier.is_urgent)


async def receive_report(session: AsyncSession, protocol: Protocol, patient: Patient, text: str,
                         *, now: datetime, inbound_id: int | None,
                         source: str = "free_text") -> list[Reply]:
    """A report in free text: stored, triaged, paged if urgent; the patient's scripted reply."""
    if not text.strip():
        return [Reply("report.empty")]
    report = await record_report(session, protocol, patient, text, now=now,
                                 inbound_id=inbound_id, source=source)
    replies = [await reply_to(session, report)]
    if asks_about_allocation(text, protocol.triage):
        # Logged for the site; the answer is the same for everyone and reveals nothing.
        audit.record(session, at=now, actor=Actor.patient(patient.subject_id),
                     action="blinding_question", entity="symptom_reports",
                     entity_id=str(report.id), new=text[:500])
        replies.append(Reply("report.blinding_answer"))
    return replies


async def unreviewed(session: AsyncSession, site_id: str | None, *,
                     limit: int = 200) -> list[SymptomReport]:
    """Routine reports of a site (every site: None) that no staff member has reviewed."""
    query = (select(SymptomReport).join(Patient, Patient.id == SymptomReport.patient_id)
             .where(SymptomReport.tier == Tier.ROUTINE.value,
                    SymptomReport.reviewed_at.is_(None)))
    if site_id is not None:
        query = query.where(Patient.site_id == site_id)
    return list((await session.execute(
        query.order_by(SymptomReport.received_at, SymptomReport.id).limit(limit))).scalars())


async def mark_reviewed(session: AsyncSession, reports: list[SymptomReport], *, staff_id: int,
                        now: datetime, actor: Actor, reason: str) -> int:
    """Record that a staff member reviewed these reports (who and when, audited); how many
    were newly reviewed."""
    count = 0
    for report in reports:
        if report.reviewed_at is None:
            audit.change(session, report, at=now, actor=actor, reason=reason, reviewed_at=now,
                         reviewed_by=staff_id)
            count += 1
    return count

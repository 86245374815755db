"""The daily digest of one site: what its staff should look at today, in one message.

Open alerts with their age, routine reports no staff member has reviewed yet (listed in every
digest until one does: /reviewed N), patients flagged for adherence, missed and upcoming
visits, opted-out and unreachable patients. A quiet day is one line. The adherence chart goes
with it (study/chart.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from messages import catalogue
from storage.models import Alert, InboundMessage, Patient, Site, Staff, SymptomReport, Visit
from study.adherence import PatientAdherence, patient_adherence
from study.alerts import UNRESOLVED, media_word
from study.recipients import patient_route
from study.senders import UNREGISTERED, mask_sender
from study.staff_access import DIGEST_ROLES
from trial import delivery, schedule
from trial.protocol import Protocol

UPCOMING_DAYS = 7
REPORT_TEXT_LIMIT = 120  # characters of a patient's report shown in a digest line
MISSED_LOOKBACK_DAYS = 14  # a missed visit stays on the digest for two weeks
REPORT_TEXT_CHARS = 160
ADHERENCE_WINDOWS = (7, 28)
UNREADABLE_OUTCOMES = ("unparsable", "failed")  # bot.inbox.UNPARSABLE, bot.inbox.FAILED


@dataclass(frozen=True)
class AlertLine:
    alert_id: int
    subject_id: str
    kind: str
    tier: str
    status: str
    received_at: datetime
    summary: str


@dataclass(frozen=True)
class ReportLine:
    report_id: int
    subject_id: str
    received_at: datetime
    text: str
    media: tuple[str, ...] = ()  # the kinds of file the patient sent with it (study.media)


@dataclass(frozen=True)
class SaeLine:
    """A possible SAE whose sponsor report is not recorded yet."""

    alert_id: int
    subject_id: str
    deadline: datetime


@dataclass(frozen=True)
class VisitLine:
    subject_id: str
    visit: str
    scheduled_date: date
    window_end: date


@dataclass(frozen=True)
class FlagLine:
    subject_id: str
    flags: tuple[str, ...]


@dataclass
class SiteDigest:
    """Everything one site's digest says, as data."""

    site_id: str
    tz: str
    local_date: date
    now: datetime
    alerts: list[AlertLine] = field(default_factory=list)
    reports: list[ReportLine] = field(default_factory=list)
    flagged: list[FlagLine] = field(default_factory=list)
    missed_visits: list[VisitLine] = field(default_factory=list)
    upcoming_visits: list[VisitLine] = field(default_factory=list)
    opted_out: list[str] = field(default_factory=list)
    unreachable: list[str] = field(default_factory=list)
    unreadable: int = 0  # inbound messages of the last day stored raw (unparsable, failed)
    patients: int = 0
    # Routine reports nobody has reviewed for more than two working days (shown first).
    overdue_reports: list[ReportLine] = field(default_factory=list)
    sae_clocks: list[SaeLine] = field(default_factory=list)  # not yet reported to the sponsor

    @property
    def quiet(self) -> bool:
        """Nothing to look at today."""
        return not (self.alerts or self.reports or self.flagged or self.missed_visits
                    or self.upcoming_visits or self.opted_out or self.unreachable
                    or self.unreadable or self.overdue_reports or self.sae_clocks)


async def open_alerts(session: AsyncSession, site_ids: Sequence[str] | None, *,
                      patient_id: int | None = None) -> list[AlertLine]:
    """Alerts not yet resolved, oldest first (all sites when `site_ids` is None)."""
    query = (select(Alert, Patient.subject_id, SymptomReport.raw_text)
             .outerjoin(Patient, Patient.id == Alert.patient_id)
             .outerjoin(SymptomReport, SymptomReport.id == Alert.report_id)
             .where(Alert.status.in_(UNRESOLVED))
             .order_by(Alert.received_at, Alert.id))
    if site_ids is not None:
        query = query.where(Alert.site_id.in_(site_ids))
    if patient_id is not None:
        query = query.where(Alert.patient_id == patient_id)
    rows = (await session.execute(query)).all()
    # A symptom alert is shown with the patient's own words (an unregistered sender's too,
    # with the sender masked); other kinds by their kind, in the reader's language (their
    # stored summary is an English note for the audit trail).
    return [AlertLine(a.id, subject or (mask_sender(a.sender) if a.sender else "-"), a.kind,
                      a.tier, a.status, a.received_at,
                      (text or a.summary)[:REPORT_TEXT_LIMIT]
                      if a.kind in ("symptom", UNREGISTERED) else "")
            for a, subject, text in rows]


async def visits_between(session: AsyncSession, site_ids: Sequence[str] | None, *, today: date,
                         days: int, lookback: int = MISSED_LOOKBACK_DAYS,
                         ) -> tuple[list[VisitLine], list[VisitLine]]:
    """(missed, upcoming): visits marked missed (by the visit planner) that were due in the
    last `lookback` days, and planned visits from today through `days` days ahead."""
    query = (select(Visit, Patient.subject_id).join(Patient, Patient.id == Visit.patient_id)
             .where(Patient.status != "withdrawn",
                    or_(and_(Visit.status == "missed",
                             Visit.scheduled_date >= today - timedelta(days=lookback)),
                        and_(Visit.status == "planned", Visit.scheduled_date >= today,
                             Visit.scheduled_date <= today + timedelta(days=days))))
             .order_by(Visit.scheduled_date, Patient.subject_id, Visit.name))
    if site_ids is not None:
        query = query.where(Patient.site_id.in_(site_ids))
    missed: list[VisitLine] = []
    upcoming: list[VisitLine] = []
    for visit, subject in (await session.execute(query)).all():
        line = VisitLine(subject, visit.name, visit.scheduled_date, visit.window_end)
        (missed if visit.status == "missed" else upcoming).append(line)
    return missed, upcoming


async def _new_routine_reports(session: AsyncSession, site_id: str) -> list[ReportLine]:
    rows = (await session.execute(
        select(SymptomReport, Patient.subject_id)
        .join(Patient, Patient.id == SymptomReport.patient_id)
        .where(Patient.site_id == site_id, SymptomReport.tier == "routine",
               SymptomReport.reviewed_at.is_(None))  # listed until a staff member reviews it
        .order_by(SymptomReport.received_at, SymptomReport.id))).all()
    return [ReportLine(r.id, subject, r.received_at, _short(r.raw_text), tuple(
        str(m.get("kind")) for m in (r.parsed or {}).get("media") or [] if isinstance(m, dict)))
        for r, subject in rows]


def _short(text: str) -> str:
    text = " ".join(text.split())
    return catalogue.shortened(text, REPORT_TEXT_CHARS)


@dataclass(frozen=True)
class AdherenceLine:
    """One patient's adherence over the last 7 and 28 local days (today included)."""

    subject_id: str
    site_id: str
    last_7: PatientAdherence
    last_28: PatientAdherence

    @property
    def flags(self) -> tuple[str, ...]:
        """The adherence flags raised within the last 28 days."""
        return self.last_28.flags.names


def window_start(now: datetime, tz: str, days: int) -> date:
    """First local date of the last `days` days, today included."""
    return schedule.local_date(now, tz) - timedelta(days=days - 1)


async def adherence_lines(session: AsyncSession, protocol: Protocol,
                          site_ids: Sequence[str] | None, *,
                          now: datetime) -> list[AdherenceLine]:
    """Adherence of the enrolled (not withdrawn) patients of some sites (None: every site).

    Figures and flags are the dose module's (`study.adherence.patient_adherence`), over windows
    starting 6 and 27 days before the patient's local today.
    """
    query = (select(Patient).where(Patient.status != "withdrawn")
             .order_by(Patient.site_id, Patient.subject_id))
    if site_ids is not None:
        query = query.where(Patient.site_id.in_(site_ids))
    lines = []
    for patient in (await session.execute(query)).scalars().all():
        week, month = [await patient_adherence(session, protocol, patient, now=now,
                                               start=window_start(now, patient.tz, days))
                       for days in ADHERENCE_WINDOWS]
        lines.append(AdherenceLine(patient.subject_id, patient.site_id, week, month))
    return lines


async def gather(session: AsyncSession, protocol: Protocol, site: Site, *,
                 now: datetime) -> SiteDigest:
    """The content of a site's digest as of `now`."""
    today = schedule.local_date(now, site.tz)
    digest = SiteDigest(site.id, site.tz, today, now)
    digest.alerts = await open_alerts(session, [site.id])
    reports = await _new_routine_reports(session, site.id)
    overdue = [r for r in reports if working_days_between(
        schedule.local_date(r.received_at, site.tz), today,
        protocol.escalation.holidays) > REVIEW_WORKING_DAYS]
    digest.overdue_reports = overdue
    digest.reports = [r for r in reports if r not in overdue]
    digest.sae_clocks = await _sae_clocks(session, site.id)
    digest.missed_visits, digest.upcoming_visits = await visits_between(
        session, [site.id], today=today, days=UPCOMING_DAYS)
    patients = (await session.execute(
        select(Patient).where(Patient.site_id == site.id, Patient.status != "withdrawn")
        .order_by(Patient.subject_id))).scalars().all()
    digest.patients = len(patients)
    digest.opted_out = [p.subject_id for p in patients if p.opted_out]
    digest.unreachable = [p.subject_id for p in patients
                          if delivery.receives_routine(p.status, p.opted_out)
                          and patient_route(p) is None]
    digest.unreadable = await unreadable(session, since=now - timedelta(days=1), until=now)
    digest.flagged = [FlagLine(line.subject_id, line.flags)
                      for line in await adherence_lines(session, protocol, [site.id], now=now)
                      if line.flags]
    return digest


async def unreadable(session: AsyncSession, *, since: datetime, until: datetime) -> int:
    """Inbound messages received in [since, until) that no one could read or handle, stored as
    they came (outcomes of bot.inbox); a daily digest counts the day before it once."""
    return int((await session.execute(select(func.count()).select_from(InboundMessage).where(
        InboundMessage.outcome.in_(UNREADABLE_OUTCOMES), InboundMessage.received_at >= since,
        InboundMessage.received_at < until))).scalar_one())


def listed(digest: SiteDigest) -> int:
    """How many routine reports the digest lists. Listing is no review: a report stays in
    every digest until a staff member reviews it (/reviewed N, study.reports.mark_reviewed)."""
    return len(digest.reports) + len(digest.overdue_reports)


REVIEW_WORKING_DAYS = 2  # routine reports are reviewed within 1-2 working days


def working_days_between(start: date, end: date, holidays: Sequence[date] = ()) -> int:
    """Working days (Monday to Friday, not a holiday) after `start` up to and including `end`."""
    days, day = 0, start
    while day < end:
        day += timedelta(days=1)
        if day.isoweekday() <= 5 and day not in holidays:
            days += 1
    return days


async def _sae_clocks(session: AsyncSession, site_id: str) -> list[SaeLine]:
    rows = (await session.execute(
        select(Alert.id, Patient.subject_id, Alert.sae_deadline_at)
        .outerjoin(Patient, Patient.id == Alert.patient_id)
        .where(Alert.site_id == site_id, Alert.sae_deadline_at.is_not(None),
               Alert.sae_reported_at.is_(None))
        .order_by(Alert.sae_deadline_at, Alert.id))).all()
    return [SaeLine(alert_id, subject or "-", deadline) for alert_id, subject, deadline in rows
            if deadline is not None]


async def recipients(session: AsyncSession, site_id: str) -> list[Staff]:
    """Active coordinators, investigators and PIs of the site."""
    return (await recipients_of(session, [site_id])).get(site_id, [])


async def recipients_of(session: AsyncSession, site_ids: Sequence[str]) -> dict[str, list[Staff]]:
    """`recipients` of several sites in one query (sites falling due together), by site."""
    if not site_ids:
        return {}
    staff = (await session.execute(
        select(Staff).where(Staff.site_id.in_(list(site_ids)), Staff.active.is_(True),
                            Staff.role.in_(DIGEST_ROLES)).order_by(Staff.id))).scalars().all()
    by_site: dict[str, list[Staff]] = {}
    for member in staff:
        by_site.setdefault(str(member.site_id), []).append(member)
    return by_site


def age(since: datetime, now: datetime, language: str) -> str:
    """How long ago, as minutes, hours, or days and hours."""
    minutes = max(int((now - since).total_seconds() // 60), 0)
    if minutes < 60:
        return catalogue.render("digest.age_minutes", language, minutes=minutes)
    hours = minutes // 60
    if hours < 48:
        return catalogue.render("digest.age_hours", language, hours=hours)
    return catalogue.render("digest.age_days", language, days=hours // 24, hours=hours % 24)


def local_time(moment: datetime, tz: str) -> str:
    """A UTC instant as the site's wall time, `MM-DD HH:MM`."""
    return moment.astimezone(ZoneInfo(tz)).strftime("%m-%d %H:%M")


def word(kind: str, code: str, language: str) -> str:
    """A code (tier, alert status, adherence flag) in words; the code itself if it has none."""
    try:
        return catalogue.render(f"digest.{kind}_{code}", language)
    except catalogue.MissingMessageError:
        return code


def render(digest: SiteDigest, language: str) -> tuple[str, list[str]]:
    """The digest as a header and lines (to be split into messages); one line on a quiet day."""
    t = catalogue.render
    day = digest.local_date.isoformat()
    if digest.quiet:
        return t("digest.quiet", language, site=digest.site_id, date=day,
                 patients=digest.patients), []
    header = t("digest.header", language, site=digest.site_id, date=day,
               patients=digest.patients)
    lines: list[str] = []

    def section(title_id: str, rows: list[str], count: int | None = None,
                **params: object) -> None:
        if rows:
            lines.append("")
            lines.append(t(title_id, language, count=len(rows) if count is None else count,
                           **params))
            lines.extend(rows)

    def report_text(r: ReportLine) -> str:
        if not r.media:
            return r.text
        kinds = ", ".join(dict.fromkeys(media_word(k, language) for k in r.media))
        return t("digest.report_media", language, kinds=kinds, text=r.text).strip()

    def report_rows(reports: Sequence[ReportLine]) -> list[str]:
        return [t("digest.report_row", language, id=r.report_id, subject=r.subject_id,
                  received=local_time(r.received_at, digest.tz), text=report_text(r))
                for r in reports]

    # First: routine reports nobody has reviewed for more than two working days.
    section("digest.section_reports_overdue", report_rows(digest.overdue_reports))
    section("digest.section_alerts", [
        t("digest.alert_row", language, id=a.alert_id,
          subject=(t("alert.unregistered_sender", language, sender=a.subject_id)
                   if a.kind == UNREGISTERED else a.subject_id),
          tier=word("tier", a.tier, language), status=word("status", a.status, language),
          age=age(a.received_at, digest.now, language),
          summary=a.summary or (t("digest.media_alert", language, id=a.alert_id)
                                if a.kind == "media" else word("kind", a.kind, language)))
        for a in digest.alerts])
    section("digest.section_sae", [
        t("digest.sae_row", language, id=s.alert_id, subject=s.subject_id,
          deadline_local=s.deadline.astimezone(ZoneInfo(digest.tz)).strftime("%m-%d %H:%M"),
          deadline_utc=s.deadline.astimezone(UTC).strftime("%m-%d %H:%M UTC"))
        for s in digest.sae_clocks])
    section("digest.section_reports", report_rows(digest.reports))
    section("digest.section_flags", [
        t("digest.flag_row", language, subject=f.subject_id,
          flags=", ".join(word("flag", x, language) for x in f.flags)) for f in digest.flagged])
    section("digest.section_missed_visits", [
        t("digest.missed_visit_row", language, subject=v.subject_id, visit=v.visit,
          date=v.scheduled_date.isoformat(), window_end=v.window_end.isoformat())
        for v in digest.missed_visits])
    section("digest.section_upcoming_visits", [
        t("digest.visit_row", language, subject=v.subject_id, visit=v.visit,
          date=v.scheduled_date.isoformat()) for v in digest.upcoming_visits],
        days=UPCOMING_DAYS)
    # Subject lists on one line each: these can be long-standing and many.
    section("digest.section_opted_out", [", ".join(digest.opted_out)] if digest.opted_out
            else [], count=len(digest.opted_out))
    section("digest.section_unreachable", [", ".join(digest.unreachable)]
            if digest.unreachable else [], count=len(digest.unreachable))
    if digest.unreadable:
        lines.extend(["", t("digest.unreadable", language, count=digest.unreadable)])
    return header, lines

"""Adherence read off the dose rows: one patient's counts, figures and flags over a window of
local dates (`patient_adherence`), and the report of every patient of a site, with each site's
sums (`adherence_report`). The figures and flags are the trial's (`trial.adherence`).

Reports, digests and staff views ask for every patient of a site in turn: the site's days are
read once per session (one query, not one per patient; `study.dose_records.DOSE_DAYS`) and
forgotten whenever a dose changes or the session flushes, commits or rolls back.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import DoseRecord, Patient
from study.dose_records import DOSE_DAYS, DoseDay
from trial import schedule
from trial.adherence import Counts, Flags, days_between, summarize
from trial.protocol import Protocol

_DAYS_SPAN = timedelta(days=28)
_DAYS_MARGIN = timedelta(days=7)


@dataclass(frozen=True)
class PatientAdherence:
    """One patient's adherence over a window of local dates."""

    subject_id: str
    site_id: str
    start: date
    end: date  # exclusive
    counts: Counts
    flags: Flags

    def as_dict(self) -> dict[str, object]:
        """For JSON: counts, the three figures (fractions) and the flags."""
        return {"subject_id": self.subject_id, "site": self.site_id,
                "from": self.start.isoformat(), "to": self.end.isoformat(),
                **self.counts.as_dict(), "flags": list(self.flags.names)}


async def patient_adherence(session: AsyncSession, protocol: Protocol, patient: Patient, *,
                            now: datetime, start: date | None = None,
                            end: date | None = None) -> PatientAdherence:
    """A patient's adherence from baseline (or `start`) up to today (or `end`, exclusive)."""
    last = min(schedule.end_of_doses(protocol, patient.baseline),
               schedule.local_date(now, patient.tz) + timedelta(days=1))
    start = max(start or patient.baseline, patient.baseline)
    end = max(start, min(end or last, last))
    days = await _site_days(session, patient.site_id, start, end)
    records = days_between(days.get(patient.id, {}), start, end)
    summary = summarize(records)
    return PatientAdherence(patient.subject_id, patient.site_id, start, end, summary.counts,
                            summary.flags)


async def _site_days(session: AsyncSession, site_id: str, start: date,
                     end: date) -> dict[int, dict[date, DoseDay]]:
    for (site, low, high), cached in DOSE_DAYS.entries(session).items():
        if site == site_id and low <= start and end <= high:
            return cached
    # A little either side: the site's other patients (baselines days apart) then read from
    # the cache too. Extra days are harmless: callers take their own window's dates.
    low = min(start, end - _DAYS_SPAN) - _DAYS_MARGIN
    end += _DAYS_MARGIN
    rows = (await session.execute(
        select(DoseRecord.patient_id, DoseRecord.local_date, DoseRecord.state,
               DoseRecord.late_answer)
        .join(Patient, Patient.id == DoseRecord.patient_id)
        .where(Patient.site_id == site_id, DoseRecord.local_date >= low,
               DoseRecord.local_date < end))).all()
    days: dict[int, dict[date, DoseDay]] = {}
    for patient_id, day, state, late_answer in rows:
        days.setdefault(patient_id, {})[day] = DoseDay(state, late_answer)
    DOSE_DAYS.keep(session, (site_id, low, end), days)
    return days


@dataclass(frozen=True)
class AdherenceReport:
    """Per patient and per site."""

    patients: list[PatientAdherence]
    sites: dict[str, Counts]

    def as_dict(self) -> dict[str, object]:
        flagged: dict[str, int] = {}
        for p in self.patients:
            flagged[p.site_id] = flagged.get(p.site_id, 0) + int(p.flags.any)
        return {"patients": [p.as_dict() for p in self.patients],
                "sites": [{"site": site, **counts.as_dict(), "flagged": flagged.get(site, 0)}
                          for site, counts in sorted(self.sites.items())]}


async def adherence_report(session: AsyncSession, protocol: Protocol, *, now: datetime,
                           site_id: str | None = None, start: date | None = None,
                           end: date | None = None) -> AdherenceReport:
    """Adherence of every patient (of one site), and each site's sums."""
    statement = select(Patient).order_by(Patient.site_id, Patient.subject_id)
    if site_id is not None:
        statement = statement.where(Patient.site_id == site_id)
    patients = (await session.execute(statement)).scalars().all()
    results = [await patient_adherence(session, protocol, p, now=now, start=start, end=end)
               for p in patients]
    sites: dict[str, Counts] = {}
    for result in results:
        sites.setdefault(result.site_id, Counts()).merge(result.counts)
    return AdherenceReport(results, sites)

"""Bulk enrolment from a CSV roster: every row is checked first, then all enrol or none do."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.audit import Actor
from storage.models import Patient, Site
from study.enrolment import enroll
from trial import enrolment as check
from trial.enrolment import (
    Enrolment,
    EnrolmentError,
    check_enrolment,
    dose_time_outside_quiet_hours,
)
from trial.protocol import Protocol

COLUMNS = ("subject_id", "site", "baseline", "dose_time", "language", "phone", "tz")


@dataclass(frozen=True)
class Problem:
    """One bad field of one line of the roster (line 1 is the header)."""

    line: int
    field: str
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.field}: {self.reason}"


class RosterError(Exception):
    """The roster has problems; nothing was enrolled."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(str(p) for p in self.problems))


@dataclass(frozen=True)
class RosterRow:
    line: int
    enrolment: Enrolment


@dataclass(frozen=True)
class Enrolled:
    line: int
    subject_id: str
    site_id: str
    link_code: str


def parse_roster(text: str) -> tuple[list[RosterRow], list[Problem]]:
    """Check the header and every row's fields, and duplicates within the file."""
    text = text.removeprefix("\ufeff")  # a BOM from Excel's "CSV UTF-8"
    reader = csv.reader(text.splitlines(keepends=True))
    try:
        header = next(reader)
    except StopIteration:
        return [], [Problem(1, "file", "the file is empty")]
    except csv.Error as exc:
        return [], [Problem(1, "header", f"not readable as CSV: {exc}")]
    names = [name.strip().lower() for name in header]
    if names != list(COLUMNS):
        return [], [Problem(1, "header", f"expected {','.join(COLUMNS)}, got {','.join(names)}")]

    rows: list[RosterRow] = []
    problems: list[Problem] = []
    subjects: dict[str, int] = {}
    phones: dict[str, int] = {}
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            problems.append(Problem(reader.line_num, "row", f"not readable as CSV: {exc}"))
            break
        line = reader.line_num
        if not any(field.strip() for field in fields):
            continue  # blank lines (often one at the end) are not patients
        if len(fields) != len(COLUMNS):
            problems.append(Problem(line, "row", f"expected {len(COLUMNS)} fields, got "
                                                 f"{len(fields)}"))
            continue
        subject, site, baseline, dose_time, language, phone, tz = fields
        enrolment, errors = check_enrolment(subject=subject, site=site, baseline_date=baseline,
                                            dose_at=dose_time, lang=language,
                                            phone_number=phone, tz=tz)
        problems.extend(Problem(line, e.field, e.reason) for e in errors)
        bad = {e.field for e in errors}
        # Duplicates are checked even on a line with other problems, so one pass shows all.
        if "subject_id" not in bad:
            first = subjects.setdefault(subject.strip(), line)
            if first != line:
                problems.append(Problem(line, "subject_id",
                                        f"{subject.strip()} is also on line {first}"))
        if "phone" not in bad and phone.strip():
            number = check.phone(phone)
            first = phones.setdefault(number, line)
            if first != line:
                problems.append(Problem(line, "phone", f"{number} is also on line {first}"))
        if enrolment is None:
            continue
        rows.append(RosterRow(line, enrolment))
    if not rows and not problems:
        problems.append(Problem(2, "file", "no patients after the header"))
    return rows, problems


async def check_against_study(session: AsyncSession, rows: Sequence[RosterRow]) -> list[Problem]:
    """Problems the database reveals: unknown sites, subjects or phones already enrolled."""
    sites = set((await session.execute(select(Site.id))).scalars())
    subjects = {r.enrolment.subject_id for r in rows}
    phones = {r.enrolment.phone for r in rows if r.enrolment.phone}
    taken_subjects = set((await session.execute(
        select(Patient.subject_id).where(Patient.subject_id.in_(subjects)))).scalars())
    taken_phones = set((await session.execute(
        select(Patient.phone).where(Patient.phone.in_(phones))))
        .scalars()) if phones else set()
    problems = []
    for row in rows:
        e = row.enrolment
        if e.site_id not in sites:
            problems.append(Problem(row.line, "site", f"no site {e.site_id}"))
        if e.subject_id in taken_subjects:
            problems.append(Problem(row.line, "subject_id", f"{e.subject_id} is already enrolled"))
        if e.phone in taken_phones:
            problems.append(Problem(row.line, "phone", f"{e.phone} belongs to an enrolled "
                                                       "patient"))
    return problems


async def import_roster(session: AsyncSession, protocol: Protocol, text: str, *, now: datetime,
                        actor: Actor) -> list[Enrolled]:
    """Enrol every patient of a roster in this transaction, or raise RosterError."""
    rows, problems = parse_roster(text)
    problems += await check_against_study(session, rows)
    for row in rows:
        try:
            dose_time_outside_quiet_hours(row.enrolment.dose_time, protocol.quiet_hours)
        except EnrolmentError as exc:
            problems.append(Problem(row.line, exc.field, str(exc).partition(": ")[2]))
    if problems:
        raise RosterError(sorted(problems, key=lambda p: p.line))
    enrolled = []
    for row in rows:
        patient, code = await enroll(session, protocol, row.enrolment, now=now, actor=actor)
        enrolled.append(Enrolled(row.line, patient.subject_id, patient.site_id, code))
    return enrolled

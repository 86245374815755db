"""Study visits: rows at enrolment, moves and completion by staff, notices, missed windows;
the phase-change and end-of-study notices that recording a visit sends.

Every change is audited. A move bumps the visit's revision, and notice keys carry it
(`visit:{visit_id}:r{revision}:d{days}`), so a notice planned for an old date is never sent.
Notice planning is proportional to what is due: `next_notice_at` (set at creation, on a move
and as notices are planned or dropped) says when a visit next needs a look.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, date, datetime

from babel.dates import format_date
from sqlalchemy import ColumnElement, exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from messages import catalogue, sms
from storage import audit, outbox
from storage.audit import Actor
from storage.models import (
    OutboundMessage,
    Patient,
    Visit,
)
from study import alerts, outgoing
from study.outgoing import Rendered
from study.recipients import patient_route
from trial import phases, schedule
from trial import visits as rules
from trial.protocol import Protocol, SiteText, VisitTemplate
from trial.visits import Notice

SYSTEM = Actor.system("visits")
# Same-language sentences are joined like this when a notice is built from its parts.
JOINERS = {"zh": "", "en": " "}


class VisitError(ValueError):
    """A refused visit operation; `message_id` and `params` render it for staff."""

    def __init__(self, message_id: str, **params: object) -> None:
        self.message_id = message_id
        self.params = params
        super().__init__(catalogue.render(message_id, "en", **params))


@dataclass(frozen=True)
class VisitChange:
    """The outcome of a move or a completion, for the CLI and the staff reply."""

    subject_id: str
    visit: str
    old_date: date | None
    new_date: date
    window_start: date
    window_end: date
    out_of_window: bool
    cancelled_notices: int


def template_of(protocol: Protocol, visit: Visit) -> VisitTemplate:
    """The protocol's template of a stored visit."""
    template = protocol.visits.by_name(visit.name)
    if template is None:
        raise LookupError(f"visit {visit.name} is not in the protocol's visit table")
    return template


def _open_notices(protocol: Protocol, name: str, scheduled: date, tz: str,
                  now: datetime) -> list[Notice]:
    """The notices of a visit that may still go out as of `now` (none if it gets none)."""
    if name not in rules.notified_names(protocol.visits):
        return []
    return sorted((n for n in rules.notices(protocol.visits, protocol.quiet_hours, scheduled, tz)
                   if now < n.expires), key=lambda n: n.at)


def first_notice_at(protocol: Protocol, name: str, scheduled: date, tz: str,
                    now: datetime) -> datetime | None:
    """When a visit scheduled on `scheduled` next needs a notice, as of `now` (None: never)."""
    pending = _open_notices(protocol, name, scheduled, tz, now)
    return pending[0].at if pending else None


async def create_visits(session: AsyncSession, protocol: Protocol, patient: Patient, *,
                        now: datetime, actor: Actor) -> list[Visit]:
    """Store every protocol visit of a newly enrolled patient (scheduled on its target)."""
    created = []
    for plan in rules.plan_visits(protocol.visits, patient.baseline):
        visit = Visit(patient_id=patient.id, name=plan.name, target_date=plan.target,
                      window_start=plan.window_start, window_end=plan.window_end,
                      scheduled_date=plan.target, status="planned", done_date=None,
                      out_of_window=False, revision=0,
                      next_notice_at=first_notice_at(protocol, plan.name, plan.target,
                                                     patient.tz, now))
        await audit.create(session, visit, at=now, actor=actor, reason="enrolment")
        created.append(visit)
    return created


async def patient_visits(session: AsyncSession, patient_id: int) -> list[Visit]:
    """A patient's visits in date order."""
    return list((await session.execute(
        select(Visit).where(Visit.patient_id == patient_id)
        .order_by(Visit.target_date, Visit.id))).scalars())


async def find_patient(session: AsyncSession, subject_id: str) -> Patient:
    """The patient with that subject id, or VisitError."""
    patient = (await session.execute(select(Patient).where(
        Patient.subject_id == subject_id.strip()))).scalar_one_or_none()
    if patient is None:
        raise VisitError("visit.error_no_patient", subject=subject_id.strip())
    return patient


async def find_visit(session: AsyncSession, patient: Patient, name: str) -> Visit:
    """One visit of a patient by its protocol name (case-insensitive), or VisitError."""
    wanted = name.strip().upper()
    visits = await patient_visits(session, patient.id)
    for visit in visits:
        if visit.name == wanted:
            return visit
    raise VisitError("visit.error_no_visit", subject=patient.subject_id, visit=wanted,
                     names=" ".join(v.name for v in visits))


def parse_date(value: str) -> date:
    """A YYYY-MM-DD date, or VisitError."""
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise VisitError("visit.error_bad_date", value=value.strip()) from None


async def cancel_notices(session: AsyncSession, visit: Visit, *, now: datetime,
                         reason: str) -> int:
    """Cancel the visit's notices that are still queued (their date no longer holds)."""
    return await outbox.cancel_queued(session, OutboundMessage.visit_id == visit.id, now=now,
                                      reason=reason)


async def move_visit(session: AsyncSession, protocol: Protocol, patient: Patient, name: str,
                     new_date: date, *, reason: str, now: datetime, actor: Actor) -> VisitChange:
    """Reschedule a visit; its old notices are cancelled and new ones follow the new date."""
    reason = reason.strip()
    if not reason:
        raise VisitError("visit.error_no_reason")
    visit = await find_visit(session, patient, name)
    if visit.status == "done":
        raise VisitError("visit.error_already_done", subject=patient.subject_id,
                         visit=visit.name, date=visit.done_date)
    if new_date == visit.scheduled_date and visit.status == "planned":
        raise VisitError("visit.error_same_date", subject=patient.subject_id, visit=visit.name,
                         date=new_date)
    old_date = visit.scheduled_date
    out = not rules.in_window(new_date, visit.window_start, visit.window_end)
    # A missed visit that staff reschedule is planned again (and flagged when outside).
    audit.change(session, visit, at=now, actor=actor, reason=reason, scheduled_date=new_date,
                 revision=visit.revision + 1, out_of_window=out, status="planned")
    # A scheduling cursor, not study data: derived again from the new date, not audited.
    visit.next_notice_at = first_notice_at(protocol, visit.name, new_date, patient.tz, now)
    cancelled = await cancel_notices(session, visit, now=now,
                                     reason=f"visit moved to {new_date.isoformat()}")
    return VisitChange(patient.subject_id, visit.name, old_date, new_date, visit.window_start,
                       visit.window_end, out, cancelled)


async def mark_done(session: AsyncSession, protocol: Protocol, patient: Patient, name: str, *,
                    done_date: date | None, now: datetime, actor: Actor,
                    reason: str | None = None) -> VisitChange:
    """Record that a visit took place (today, local, by default), flagged if outside its window."""
    visit = await find_visit(session, patient, name)
    today = schedule.local_date(now, patient.tz)
    day = done_date or today
    if visit.status == "done":
        raise VisitError("visit.error_already_done", subject=patient.subject_id,
                         visit=visit.name, date=visit.done_date)
    if day > today:
        raise VisitError("visit.error_future_done", subject=patient.subject_id,
                         visit=visit.name, date=day)
    out = not rules.in_window(day, visit.window_start, visit.window_end)
    old_date = visit.scheduled_date
    audit.change(session, visit, at=now, actor=actor, reason=reason, status="done",
                 done_date=day, out_of_window=out)
    visit.next_notice_at = None
    cancelled = await cancel_notices(session, visit, now=now, reason="visit done")
    await queue_phase_notice(session, protocol, patient, visit.name, now=now)
    return VisitChange(patient.subject_id, visit.name, old_date, day, visit.window_start,
                       visit.window_end, out, cancelled)


def render_visit_notice(template: VisitTemplate, day: date, days: int,
                        language: str, *, hold: bool = False,
                        site: SiteText | None = None) -> Rendered:
    """A visit notice in a language: when (the baseline visit as the first one, not a return
    visit), the site's time and place where the protocol gives them, then the visit's
    instructions (same for all arms; `hold` from `trial.visits.holds_dose` for the patient's
    dose time). Its template id is the kind of notice (`visit.notice_in_days`,
    `visit.notice_tomorrow`), its version the digest of every wording it is made of."""
    pattern = catalogue.template("visit.date_format", language).text
    when = format_date(day, format=pattern, locale=catalogue.LOCALES[language])
    head = "visit.notice_tomorrow" if days == 1 else "visit.notice_in_days"
    first = head.replace("visit.notice_", "visit.notice_first_") if template.day == 0 else head
    parts = [catalogue.template(first, language)]
    values: dict[str, object] = {"days": days, "date": when}
    if site is not None and site.visit_time.strip() and site.visit_place is not None:
        parts.append(catalogue.template("visit.when_where", language))
        values |= {"time": site.visit_time.strip(), "place": site.visit_place.get(language)}
    parts += [catalogue.template(f"visit.{name}", language)
              for name in rules.instructions(template, hold=hold)]
    body = JOINERS[language].join(part.render(**values) for part in parts)
    digest = hashlib.sha256("\n".join([pattern, *(p.text for p in parts)]).encode())
    return Rendered(body, head, digest.hexdigest()[:10])


# Segments a visit notice may take, by language: Chinese one, English with every instruction
# two (visit.po); on a one-way route (the site's phone and 120 added) one more.
NOTICE_SEGMENTS = {"zh": 1, "en": 2}
LONGEST_DATE = date(2026, 12, 30)  # a two-digit month and day, a three-character weekday


def notice_problems(protocol: Protocol) -> list[str]:
    """The visit notices over their segment budget (`NOTICE_SEGMENTS`) as the protocol's sites
    send them: every instruction of each notified visit, the hold where it can apply, the
    site's time and place, its signature (and one-way line), the longest date. A notice is
    made of parts (measured one by one by the SMS check): this measures it whole."""
    sites: list[tuple[str, SiteText | None]] = [("", None), *protocol.sites.items()]
    problems = []
    for template in protocol.visits.table:
        if not template.notify:
            continue
        hold = template.hold_dose and template.day > 0
        for code, site in sites:
            for language, budget in NOTICE_SEGMENTS.items():
                body = render_visit_notice(template, LONGEST_DATE, 3, language, hold=hold,
                                           site=site).body
                signature = (sms.signature_for(protocol, code, "", language) if code
                             else sms.sample_signature(protocol, language))
                allowed = budget + (code in protocol.sms.one_way_sites)
                signed = sms.compose(body, "", signature)
                if sms.segments(signed) > allowed:
                    problems.append(f"{code or 'any site'} {template.name} ({language}): visit "
                                    f"notice of {sms.segments(signed)} SMS segments, over "
                                    f"{allowed}: {signed!r}")
    return problems


def _notice_candidates(now: datetime | ColumnElement[datetime]) -> list[ColumnElement[bool]]:
    """Visits whose next notice instant has come (an index look-up by instant).

    Only planned visits have one; no status test here, as SQLite would then pick the status
    index and walk every planned visit.
    """
    return [Visit.next_notice_at <= now]


def notices_may_be_due(now: datetime | ColumnElement[datetime]) -> ColumnElement[bool]:
    """SQL: `plan_notices` may have something to queue (or a passed notice to drop)."""
    return exists().where(*_notice_candidates(now))


async def plan_notices(session: AsyncSession, protocol: Protocol, now: datetime) -> int:
    """Queue every visit notice whose instant has come (and whose day has not passed).

    Each visit looked at moves its `next_notice_at` on to its next notice not yet queued nor
    expired; a notice held back (quiet hours, patient unreachable, inactive or opted out)
    keeps it, so the visit is looked at again until the notice goes out or its day is over.
    """
    rows = (await session.execute(
        select(Visit, Patient).join(Patient, Patient.id == Visit.patient_id)
        .where(*_notice_candidates(now)))).all()
    if not rows:
        return 0
    existing = set((await session.execute(select(OutboundMessage.dedupe_key).where(
        OutboundMessage.visit_id.in_([visit.id for visit, _ in rows])))).scalars())
    planned = 0
    for visit, patient in rows:
        if visit.status != "planned":  # done or missed: nothing more to say about it
            visit.next_notice_at = None
            continue
        route = patient_route(patient)
        sendable = (route is not None  # a routine route: the patient receives routine messages
                    and not rules.is_quiet(now, protocol.quiet_hours, patient.tz))
        following: datetime | None = None
        for notice in _open_notices(protocol, visit.name, visit.scheduled_date, patient.tz,
                                    now):
            key = f"visit:{visit.id}:r{visit.revision}:d{notice.days}"
            if key in existing:
                continue
            if notice.at > now or not sendable or route is None:
                following = notice.at
                break
            template = template_of(protocol, visit)
            text = render_visit_notice(
                template, visit.scheduled_date, notice.days, patient.language,
                hold=rules.holds_dose(template, protocol.visits, patient.dose_time),
                site=protocol.sites.get(patient.site_id))
            row = await outgoing.queue(
                session, outgoing.Recipient(route.channel, route.address, patient.language,
                                            patient_id=patient.id),
                text, key=key, now=now, due_at=notice.at, visit_id=visit.id, protocol=protocol)
            planned += row is not None
        visit.next_notice_at = following
    return planned


def _missed_candidates(protocol: Protocol, now: datetime) -> list[ColumnElement[bool]]:
    """Planned visits whose window may have closed by `now` (the local date decides)."""
    utc_today = now.astimezone(UTC).date()
    return [Visit.status == "planned", Visit.scheduled_date <= utc_today,
            Visit.window_end <= utc_today, Visit.name.in_(rules.tracked_names(protocol.visits)),
            Patient.status != "withdrawn"]


def missed_may_be_due(protocol: Protocol, now: datetime) -> ColumnElement[bool]:
    """SQL: `detect_missed` may have a visit to mark (an index look-up by date)."""
    return exists().where(Visit.patient_id == Patient.id, *_missed_candidates(protocol, now))


async def detect_missed(session: AsyncSession, protocol: Protocol, now: datetime) -> int:
    """Mark visits whose window closed unvisited as missed, each with a routine alert."""
    rows = (await session.execute(
        select(Visit, Patient).join(Patient, Patient.id == Visit.patient_id)
        .where(*_missed_candidates(protocol, now)))).all()
    missed = 0
    for visit, patient in rows:
        # A visit moved past its window is due by its new date instead.
        deadline = max(visit.window_end, visit.scheduled_date)
        if not rules.window_closed(deadline, schedule.local_date(now, patient.tz)):
            continue
        audit.change(session, visit, at=now, actor=SYSTEM, reason="window closed",
                     status="missed")
        visit.next_notice_at = None
        await cancel_notices(session, visit, now=now, reason="visit missed")
        summary = (f"{patient.subject_id} {visit.name}: no visit recorded by {deadline} "
                   f"(window {visit.window_start} to {visit.window_end})")
        await alerts.open_routine_alert(session, site_id=patient.site_id, patient=patient,
                                        kind="missed_visit", summary=summary, now=now,
                                        actor=SYSTEM)
        if visit.name == phases.final_visit(protocol):  # the study is over all the same
            await queue_phase_notice(session, protocol, patient, visit.name, now=now)
        missed += 1
    return missed


async def queue_phase_notice(session: AsyncSession, protocol: Protocol, patient: Patient,
                             name: str, *, now: datetime) -> bool:
    """Queue the phase-change or end-of-study notice that recording visit `name` sends
    (`trial.phases.notice_of_visit`), once per patient, at once (quiet hours hold it); none to a
    patient without a routine route (paused, withdrawn, opted out, unreachable)."""
    notice = phases.notice_of_visit(protocol, name)
    route = patient_route(patient)
    if notice is None or route is None:
        return False
    params: dict[str, object] = {} if notice.dose_label is None else {
        "dose_label": protocol.dose.label[notice.dose_label].get(patient.language)}
    row = await outgoing.queue(
        session, outgoing.Recipient(route.channel, route.address, patient.language,
                                    patient_id=patient.id),
        outgoing.Reply(notice.message_id, params), key=f"phase:{patient.id}:{notice.key}",
        now=now, protocol=protocol)
    return row is not None

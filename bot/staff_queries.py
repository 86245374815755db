"""Staff queries: `/adherence [SUBJECT|SITE]`, `/patient SUBJECT`, `/visits [DAYS]`, `/digest`.

Every answer is scoped by study/staff_access.py and every look at patient data is audited there.
A subject or site outside the staff member's scope is "not found", like one that does not exist.
Long answers come in pages with buttons (`PageAction`, `page:{command}:{n}`); a press re-runs
the command.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.staff_commands import CommandRouter
from messages import catalogue
from messages.actions import PageAction
from messages.channel import Choice
from messages.pagination import ROWS_PER_PAGE, UNLIMITED_ROWS, paginate, pick
from storage.models import DoseRecord, Patient, Site, Staff, Visit
from study import digest, staff_access
from study.adherence import patient_adherence
from study.replies import Reply
from trial import schedule
from trial.adherence import days_between
from trial.dose import OPEN_VALUES
from trial.protocol import Protocol

VISIT_DAYS_DEFAULT = 7
VISIT_DAYS_MAX = 90

Pager = Callable[[AsyncSession, Protocol, Staff, str, int, datetime],
                 Awaitable[list[Reply]]]

router = CommandRouter("queries")


def _t(message_id: str, staff: Staff, **params: object) -> str:
    return catalogue.render(message_id, staff.language, **params)


def _not_found(query: str) -> list[Reply]:
    return [Reply("staff.not_found", {"query": query})]


def _pages(staff: Staff, command: str, header: str, rows: Sequence[str], number: int,
           rows_per_page: int = ROWS_PER_PAGE) -> list[Reply]:
    """Page `number` of an answer, with Previous/Next buttons when there is more than one."""
    pages = paginate(header, rows, rows_per_page=rows_per_page)
    page = pick(pages, number)
    if page.count == 1:
        return [Reply("staff.text", {"body": page.text})]
    choices = []
    if page.number > 1:
        choices.append(Choice(_t("staff.page_prev", staff),
                              PageAction(command, page.number - 1).pack()))
    if page.number < page.count:
        choices.append(Choice(_t("staff.page_next", staff),
                              PageAction(command, page.number + 1).pack()))
    return [Reply("staff.page", {"body": page.text, "page": page.number, "pages": page.count},
                  tuple(choices))]


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{round(value * 100)}"


def _flags(staff: Staff, flags: Sequence[str]) -> str:
    return ", ".join(digest.word("flag", f, staff.language) for f in flags)


async def _visible_site(session: AsyncSession, staff: Staff, site_id: str, *, command: str,
                        now: datetime) -> Site | None:
    site = await session.get(Site, site_id)
    if site is None:
        staff_access.audit_query(session, staff, command=command, entity="sites",
                                 entity_id=site_id, now=now, refused="no such site")
        return None
    return site if staff_access.check_site(session, staff, site_id, command=command,
                                           now=now) else None


async def _default_sites(session: AsyncSession, staff: Staff, *, command: str,
                         now: datetime) -> list[Site]:
    """The sites a bare command covers: the staff member's own, or every site for an admin."""
    if staff_access.sees_all_sites(staff):
        staff_access.audit_query(session, staff, command=command, entity="sites",
                                 entity_id="*", now=now)
        return list((await session.execute(select(Site).order_by(Site.id))).scalars().all())
    site = await _visible_site(session, staff, staff.site_id or "", command=command, now=now)
    return [site] if site else []


# /adherence ---------------------------------------------------------------------------------

@router.command("adherence")
async def adherence(session: AsyncSession, protocol: Protocol, staff: Staff, args: str, *,
                    now: datetime) -> list[Reply]:
    """/adherence [SUBJECT|SITE]: the site table, or one subject day by day."""
    return await _adherence_page(session, protocol, staff, args, 1, now)


async def _adherence_page(session: AsyncSession, protocol: Protocol, staff: Staff, args: str,
                          number: int, now: datetime) -> list[Reply]:
    target = args.strip()
    command = f"adherence {target}".strip()
    if not target:
        sites = await _default_sites(session, staff, command="adherence", now=now)
        return await _site_table(session, protocol, staff, sites, command, number, now)
    if await session.get(Site, target) is not None:
        site = await _visible_site(session, staff, target, command="adherence", now=now)
        if site is None:
            return _not_found(target)
        return await _site_table(session, protocol, staff, [site], command, number, now)
    patient = await staff_access.find_patient(session, staff, target, command="adherence",
                                              now=now)
    if patient is None:
        return _not_found(target)
    return await _subject_days(session, protocol, staff, patient, command, number, now)


async def _site_table(session: AsyncSession, protocol: Protocol, staff: Staff,
                      sites: Sequence[Site], command: str, number: int,
                      now: datetime) -> list[Reply]:
    if not sites:
        return _not_found(staff.site_id or "-")
    label = sites[0].id if len(sites) == 1 else _t("staff.scope_all", staff)
    today = schedule.local_date(now, sites[0].tz)
    site_ids = None if len(sites) > 1 else [sites[0].id]
    rows = []
    for line in await digest.adherence_lines(session, protocol, site_ids, now=now):
        week, month = line.last_7.counts, line.last_28.counts
        rows.append(_t("staff.adherence_row", staff, subject=line.subject_id,
                       c7=_percent(week.confirmed_adherence), r7=_percent(week.response_rate),
                       w7=_percent(week.worst_case), c28=_percent(month.confirmed_adherence),
                       r28=_percent(month.response_rate), w28=_percent(month.worst_case),
                       flags=(" ⚑ " + _flags(staff, line.flags)) if line.flags else ""))
    if not rows:
        return [Reply("staff.adherence_empty", {"site": label})]
    header = _t("staff.adherence_header", staff, site=label, date=today.isoformat())
    return _pages(staff, command, header, rows, number)


async def _subject_days(session: AsyncSession, protocol: Protocol, staff: Staff,
                        patient: Patient, command: str, number: int,
                        now: datetime) -> list[Reply]:
    days = digest.ADHERENCE_WINDOWS[-1]
    start = digest.window_start(now, patient.tz, days)
    summary = await patient_adherence(session, protocol, patient, now=now, start=start)
    doses = {d.local_date: d for d in (await session.execute(
        select(DoseRecord).where(DoseRecord.patient_id == patient.id,
                                 DoseRecord.local_date >= start))).scalars().all()}
    today = schedule.local_date(now, patient.tz)
    zone = ZoneInfo(patient.tz)
    rows = []
    for record in days_between(doses, start, today + timedelta(days=1)):
        dose = doses.get(record.day)
        detail = ""
        if dose is not None and dose.answered_at is not None:
            detail += _t("staff.detail_answered", staff,
                         time=dose.answered_at.astimezone(zone).strftime("%H:%M"))
        if dose is not None and dose.late_answer and dose.late_answer_at is not None:
            detail += _t("staff.detail_late_answer", staff,
                         answer=digest.word("cell", dose.late_answer, staff.language),
                         time=dose.late_answer_at.astimezone(zone).strftime("%m-%d %H:%M"))
        if dose is not None and dose.skip_reason:
            detail += _t("staff.detail_reason", staff, reason=dose.skip_reason)
        rows.append(_t("staff.subject_day_row", staff, date=record.day.isoformat(),
                       weekday=_t(f"staff.weekday_{record.day.isoweekday()}", staff),
                       status=digest.word("cell", record.status.value, staff.language),
                       detail=detail))
    counts = summary.counts
    header = _t("staff.subject_header", staff, subject=patient.subject_id,
                site=patient.site_id, days=days,
                confirmed=_percent(counts.confirmed_adherence),
                response=_percent(counts.response_rate), worst=_percent(counts.worst_case),
                flags=_flags(staff, summary.flags.names) or _t("staff.none", staff))
    # Four weeks day by day read best as one message.
    return _pages(staff, command, header, rows, number, rows_per_page=days + 1)


# /patient ----------------------------------------------------------------------------------

def _reach(staff: Staff, configured: bool, reachable: bool) -> str:
    if not configured:
        return _t("staff.reach_none", staff)
    return _t("staff.reach_yes" if reachable else "staff.reach_no", staff)


@router.command("patient")
async def patient_card(session: AsyncSession, protocol: Protocol, staff: Staff, args: str, *,
                       now: datetime) -> list[Reply]:
    """/patient SUBJECT: status, reachability, next dose and visit, open alerts."""
    subject = args.strip()
    if not subject:
        return [Reply("staff.usage_patient")]
    patient = await staff_access.find_patient(session, staff, subject, command="patient",
                                              now=now)
    if patient is None:
        return _not_found(subject)
    zone = ZoneInfo(patient.tz)
    today = now.astimezone(zone).date()
    dose = (await session.execute(
        select(DoseRecord).where(DoseRecord.patient_id == patient.id,
                                 DoseRecord.state.in_(OPEN_VALUES))
        .order_by(DoseRecord.due_at).limit(1))).scalar_one_or_none()
    visit = (await session.execute(
        select(Visit).where(Visit.patient_id == patient.id, Visit.status == "planned",
                            Visit.scheduled_date >= today)
        .order_by(Visit.scheduled_date).limit(1))).scalar_one_or_none()
    alerts = await digest.open_alerts(session, None, patient_id=patient.id)
    status = _t(f"staff.status_{patient.status}", staff)
    if patient.opted_out:
        status += _t("staff.opted_out", staff)
    next_dose = (_t("staff.next_dose", staff,
                    time=dose.due_at.astimezone(zone).strftime("%Y-%m-%d %H:%M"),
                    state=_t(f"staff.dose_state_{dose.state}", staff))
                 if dose else _t("staff.no_open_dose", staff))
    next_visit = (_t("staff.next_visit", staff, visit=visit.name,
                     date=visit.scheduled_date.isoformat(),
                     start=visit.window_start.isoformat(), end=visit.window_end.isoformat())
                  if visit else _t("staff.none", staff))
    alert_lines = "\n".join(
        _t("staff.alert_item", staff, id=a.alert_id,
           tier=digest.word("tier", a.tier, staff.language),
           status=digest.word("status", a.status, staff.language),
           age=digest.age(a.received_at, now, staff.language), summary=a.summary)
        for a in alerts) or _t("staff.none", staff)
    return [Reply("staff.patient_card", {
        "subject": patient.subject_id, "site": patient.site_id, "status": status,
        "telegram": _reach(staff, patient.telegram_id is not None, patient.telegram_reachable),
        "sms": _reach(staff, bool(patient.phone), patient.sms_reachable),
        "dose_time": patient.dose_time, "tz": patient.tz, "next_dose": next_dose,
        "next_visit": next_visit, "alerts": alert_lines})]


# /visits -----------------------------------------------------------------------------------

@router.command("visits")
async def visits(session: AsyncSession, protocol: Protocol, staff: Staff, args: str, *,
                 now: datetime) -> list[Reply]:
    """/visits [DAYS]: visits in the next DAYS days (default 7), and those recently missed."""
    return await _visits_page(session, protocol, staff, args, 1, now)


async def _visits_page(session: AsyncSession, protocol: Protocol, staff: Staff, args: str,
                       number: int, now: datetime) -> list[Reply]:
    text = args.strip()
    if text and (not text.isdigit() or not 1 <= int(text) <= VISIT_DAYS_MAX):
        return [Reply("staff.usage_visits", {"max": VISIT_DAYS_MAX})]
    days = int(text) if text else VISIT_DAYS_DEFAULT
    sites = await _default_sites(session, staff, command="visits", now=now)
    if not sites:
        return _not_found(staff.site_id or "-")
    today = schedule.local_date(now, sites[0].tz)
    site_ids = None if staff_access.sees_all_sites(staff) else [s.id for s in sites]
    missed, upcoming = await digest.visits_between(session, site_ids, today=today, days=days)
    scope = sites[0].id if len(sites) == 1 else _t("staff.scope_all", staff)
    if not missed and not upcoming:
        return [Reply("staff.visits_none", {"site": scope, "days": days})]
    rows = []
    if upcoming:
        rows.append(_t("staff.visits_upcoming", staff, count=len(upcoming)))
        rows += [_t("staff.visit_row", staff, date=v.scheduled_date.isoformat(),
                    subject=v.subject_id, visit=v.visit) for v in upcoming]
    if missed:
        rows.append(_t("staff.visits_missed", staff, count=len(missed),
                       lookback=digest.MISSED_LOOKBACK_DAYS))
        rows += [_t("staff.missed_visit_row", staff, date=v.scheduled_date.isoformat(),
                    subject=v.subject_id, visit=v.visit, window_end=v.window_end.isoformat())
                 for v in missed]
    header = _t("staff.visits_header", staff, site=scope, days=days, date=today.isoformat())
    return _pages(staff, f"visits {days}" if text else "visits", header, rows, number)


# /digest -----------------------------------------------------------------------------------

@router.command("digest")
async def digest_now(session: AsyncSession, protocol: Protocol, staff: Staff, args: str, *,
                     now: datetime) -> list[Reply]:
    """/digest [SITE]: today's digest of the site now (nothing is marked as reviewed)."""
    from study.digest_sending import enqueue_chart

    target = args.strip() or (staff.site_id or "")
    if not target:
        return [Reply("staff.usage_digest")]
    site = await _visible_site(session, staff, target, command="digest", now=now)
    if site is None:
        return _not_found(target)
    content = await digest.gather(session, protocol, site, now=now)
    header, lines = digest.render(content, staff.language)
    pages = paginate(header, lines, rows_per_page=UNLIMITED_ROWS)
    replies = [Reply("staff.text", {"body": page.text}) for page in pages]
    await enqueue_chart(session, site, staff, content.local_date, now=now,
                        key=f"digest:{site.id}:now:{staff.id}:{now.isoformat()}")
    return replies


# Page buttons --------------------------------------------------------------------------------

PAGERS: dict[str, Pager] = {"adherence": _adherence_page, "visits": _visits_page}


@router.action(PageAction)
async def page(session: AsyncSession, protocol: Protocol, staff: Staff, action: PageAction, *,
               now: datetime) -> list[Reply]:
    """A page button: re-run the command and show the requested page."""
    if action.n < 1 or not action.command:
        return _not_found(f"{action.command}:{action.n}")
    name, _, args = action.command.partition(" ")
    pager = PAGERS.get(name)
    if pager is None:
        return _not_found(action.command)
    return await pager(session, protocol, staff, args, action.n, now)

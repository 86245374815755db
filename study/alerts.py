"""Alerts: open, page, escalate, acknowledge, resolve. Every step audited, every page queued.

Each page is one AlertEvent with a unique (alert_id, step) and outbox rows keyed
`alert:{alert_id}:page:{step}:{staff_id}:{channel}`, written in the same transaction as the
alert's new level and next escalation time: a restart between steps neither skips nor repeats.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from messages import catalogue
from messages.actions import AlertAction
from storage import audit
from storage.audit import Actor
from storage.models import (
    Alert,
    AlertEvent,
    InboundMessage,
    Patient,
    Site,
    Staff,
    SymptomReport,
)
from storage.outbox import ROUTINE, SAFETY
from study import outgoing, staff_access
from study.oncall import who_is_on_call
from study.outgoing import Choice, Reply
from study.recipients import Route, staff_route
from study.senders import subject_of
from trial.escalation import (
    STUDY_GROUPS,
    ladder,
    next_escalation,
    rung_at,
    sae_deadline,
    sae_reminder_after,
)
from trial.protocol import Protocol, Tier

log = logging.getLogger(__name__)

OPEN, ACKNOWLEDGED, RESOLVED = "open", "acknowledged", "resolved"
UNRESOLVED = (OPEN, ACKNOWLEDGED)
PAGING_ROLES = ("coordinator", "investigator", "pi")
# The one channel whose staff texts are short and carry no report words or buttons; every
# other (a chat app: Telegram, WeCom) has the whole page and its buttons.
SMS_CHANNEL = "sms"
# Characters of a report quoted in a page or an /alerts item: with the rest of the text it stays
# under Telegram's 4,096 (the whole report is stored, and exported).
QUOTE_LIMIT = 3000
REASONS_LIMIT = 400
# Same-day reports of one patient within this time of a same-day alert nobody has acknowledged
# yet join that alert (one chain of pages, not one per message): "fever" three times in ten
# minutes. Emergencies never join.
JOIN_WINDOW = timedelta(minutes=10)


class AlertError(Exception):
    """A staff action on an alert that cannot be done; `code` names the catalogue reply."""

    def __init__(self, code: str, alert_id: int | None = None) -> None:
        self.code = code
        self.alert_id = alert_id
        super().__init__(f"alert {alert_id}: {code}")


@dataclass(frozen=True)
class _Target:
    staff: Staff
    routes: list[Route]


async def _next_step(session: AsyncSession, alert_id: int) -> int:
    last = (await session.execute(select(func.max(AlertEvent.step)).where(
        AlertEvent.alert_id == alert_id))).scalar_one_or_none()
    return 0 if last is None else last + 1


async def _event(session: AsyncSession, alert: Alert, kind: str, *, now: datetime,
                 staff_id: int | None = None, detail: str = "") -> AlertEvent:
    event = AlertEvent(alert_id=alert.id, step=await _next_step(session, alert.id), kind=kind,
                       level=alert.level, staff_id=staff_id, at=now, detail=detail)
    session.add(event)
    await session.flush()
    return event


async def open_alert(session: AsyncSession, protocol: Protocol, *, site_id: str,
                     patient: Patient | None, kind: str, tier: Tier, now: datetime,
                     received_at: datetime, report: SymptomReport | None = None,
                     summary: str = "", possible_sae: bool = False,
                     actor: Actor | None = None, sender: str | None = None,
                     reasons: list[dict[str, Any]] | None = None) -> Alert:
    """Open an alert; an urgent one pages level 0 of the escalation chain at once.

    Without a patient, `sender` (a phone, or `telegram:<chat id>`) says who wrote and `reasons`
    what the triage found (an unregistered sender's urgent text: study.unregistered).
    """
    deadline = sae_deadline(protocol.escalation, received_at) if possible_sae else None
    alert = Alert(site_id=site_id, patient_id=patient.id if patient else None,
                  report_id=report.id if report else None, kind=kind, tier=tier.value,
                  sender=sender, reasons=reasons,
                  status=OPEN, summary=summary, opened_at=now, received_at=received_at,
                  sae_deadline_at=deadline,
                  sae_next_reminder_at=(sae_reminder_after(protocol.escalation, deadline, None)
                                        if deadline else None),
                  level=0, pages=0, next_escalation_at=None)
    await audit.create(session, alert, at=now, actor=actor or Actor.system("triage"),
                       reason=f"{kind} {tier.value}")
    await _event(session, alert, "opened", now=now, detail=f"{kind} {tier.value}")
    if tier.is_urgent:
        await page(session, protocol, alert, now=now)
    return alert


async def joinable(session: AsyncSession, patient: Patient, tier: Tier, *, possible_sae: bool,
                   now: datetime) -> Alert | None:
    """The patient's symptom alert a new report at this tier joins: still open (nobody has
    acknowledged it), opened at the same tier within JOIN_WINDOW, and an SAE clock already
    running if the report is a possible SAE. Otherwise None (the report opens its own alert
    and its own pages; a higher tier always does). Only same-day reports join: every
    emergency report opens its own alert and pages at once, since what it says is news a
    person must read now."""
    if tier is not Tier.SAME_DAY:
        return None
    query = (select(Alert).where(Alert.patient_id == patient.id, Alert.kind == "symptom",
                                 Alert.status == OPEN, Alert.tier == tier.value,
                                 Alert.opened_at >= now - JOIN_WINDOW)
             .order_by(Alert.id.desc()).limit(1))
    if possible_sae:
        query = query.where(Alert.sae_deadline_at.is_not(None))
    return (await session.execute(query)).scalars().first()


async def join(session: AsyncSession, alert: Alert, report: SymptomReport, *,
               now: datetime) -> None:
    """A further report on an open alert: recorded as its event, paged by the alert's chain."""
    await _event(session, alert, "report_added", now=now, detail=f"report {report.id}")


async def of_report(session: AsyncSession, report: SymptomReport) -> Alert | None:
    """The alert a report opened or joined."""
    opened = (await session.execute(select(Alert).where(
        Alert.report_id == report.id))).scalars().first()
    if opened is not None:
        return opened
    return (await session.execute(select(Alert).join(
        AlertEvent, AlertEvent.alert_id == Alert.id).where(
        AlertEvent.kind == "report_added",
        AlertEvent.detail == f"report {report.id}"))).scalars().first()


async def _groups(session: AsyncSession, site_id: str,
                  on_call: str | None) -> dict[str, list[_Target]]:
    """Who can be paged, by ladder group: the site's chain roles, the on-call staff member
    (`staff:ID`), the study admins and medical monitors; only people with a route."""
    staff = (await session.execute(select(Staff).where(
        Staff.active.is_(True),
        ((Staff.site_id == site_id) & Staff.role.in_(PAGING_ROLES))
        | Staff.role.in_(STUDY_GROUPS)).order_by(Staff.id))).scalars().all()
    groups: dict[str, list[_Target]] = {}
    for member in staff:
        routes = staff_route(member)
        if routes:
            groups.setdefault(member.role, []).append(_Target(member, routes))
    if on_call is not None and on_call.startswith("staff:"):
        person = await session.get(Staff, int(on_call.removeprefix("staff:")))
        if person is not None and person.active and person.site_id == site_id \
                and staff_route(person):
            groups[on_call] = [_Target(person, staff_route(person))]
    return groups


async def _admins(session: AsyncSession) -> list[_Target]:
    admins = (await session.execute(select(Staff).where(
        Staff.active.is_(True), Staff.role == "admin").order_by(Staff.id))).scalars().all()
    return [_Target(a, staff_route(a)) for a in admins if staff_route(a)]


def _unique(groups: dict[str, list[_Target]], names: Sequence[str]) -> list[_Target]:
    seen: set[int] = set()
    targets = []
    for name in names:
        for target in groups.get(name, []):
            if target.staff.id not in seen:
                seen.add(target.staff.id)
                targets.append(target)
    return targets


async def page(session: AsyncSession, protocol: Protocol, alert: Alert, *,
               now: datetime) -> AlertEvent:
    """Page the alert's next rung of the cumulative ladder (one escalation step).

    The first rung is whoever is on call at the site when the alert opened; each step pages
    again everyone paged before (trial.escalation.ladder). When nobody on the site can be
    paged, the admins and medical monitors are, every step, and the alert is marked
    unreached: an operational alarm (logged at ERROR, shown by /healthz, told to every
    admin by every route) until somebody acknowledges it.
    """
    policy = protocol.escalation
    site = await session.get(Site, alert.site_id)
    current = (await who_is_on_call(session, protocol, site, alert.opened_at)
               if site is not None else None)
    first = current.who if current is not None else None
    groups = await _groups(session, alert.site_id, first)
    rungs, skipped = ladder(policy.chain, set(groups), first=first, top_pages=policy.top_pages)
    step_no = alert.pages
    notes = [f"skipped {role}: nobody to page" for role in skipped]
    newly_unreached = False
    if rungs:
        rung = rung_at(rungs, step_no)
        names: Sequence[str] = rung.groups
        top_reached = step_no >= len(rungs) - 1
        notes.insert(0, f"rung {min(step_no, len(rungs) - 1) + 1}/{len(rungs)}: "
                     + ", ".join(names) + (f" (on call: {first})" if step_no == 0 and first
                                            and first in groups else ""))
        unreached = None
    else:
        names, top_reached = STUDY_GROUPS, True
        unreached = alert.unreached_at or now
        newly_unreached = alert.unreached_at is None
        notes.insert(0, f"nobody at site {alert.site_id} can be paged; study admins paged"
                     if any(groups.get(g) for g in STUDY_GROUPS) else
                     f"nobody at site {alert.site_id} nor any admin can be paged")
    targets = _unique(groups, names)
    tier = Tier(alert.tier)
    reason = f"escalation step {step_no + 1}"
    audit.change(session, alert, at=now, actor=Actor.system("escalation"), reason=reason,
                 level=step_no, pages=alert.pages + 1, unreached_at=unreached,
                 next_escalation_at=next_escalation(policy, tier, now, top_reached=top_reached))
    step = await _next_step(session, alert.id)
    context = await _context(session, alert)
    sent = []
    for target in targets:
        for route in target.routes:
            await _enqueue_page(session, alert, step, target.staff, route, context, now=now)
            sent.append(f"{target.staff.id}/{route.channel}")
    detail = "; ".join([*notes, "paged " + (", ".join(sent) or "nobody")])
    if not rungs:
        log.error("alert %s: %s", alert.id, detail)
        if newly_unreached:  # every admin is told why, by every route, once
            await _tell_unreached(session, alert, targets, context, now=now)
    event = AlertEvent(alert_id=alert.id, step=step, kind="paged", level=step_no, at=now,
                       detail=detail)
    session.add(event)
    await session.flush()
    audit.record(session, at=now, actor=Actor.system("escalation"), action="page",
                 entity="alerts", entity_id=str(alert.id), new=f"step {step}: {detail}",
                 reason=reason)
    return event


async def _tell_unreached(session: AsyncSession, alert: Alert, targets: list[_Target],
                          context: dict[str, Any], *, now: datetime) -> None:
    site: Site | None = context["site"]
    for target in targets:
        language = catalogue.reader_language(target.staff.language)
        params: dict[str, object] = {
            "id": alert.id, "site": alert.site_id,
            "tier": catalogue.render(f"alert.tier_{alert.tier}", language),
            "phone": site.phone if site and site.phone else "-"}
        for route in target.routes:
            await _queue_staff(session, alert, target.staff, route,
                               key=f"alert:{alert.id}:unreached:{target.staff.id}:"
                               f"{route.channel}", message_id="alert.unreached",
                               language=language, params=params, now=now)


async def unreached(session: AsyncSession) -> list[Alert]:
    """Open alerts whose last page reached nobody at their site (the operational alarm)."""
    return list((await session.execute(select(Alert).where(
        Alert.unreached_at.is_not(None), Alert.status == OPEN)
        .order_by(Alert.id).limit(20))).scalars())


async def _context(session: AsyncSession, alert: Alert) -> dict[str, Any]:
    site = await session.get(Site, alert.site_id)
    patient = await session.get(Patient, alert.patient_id) if alert.patient_id else None
    report = await session.get(SymptomReport, alert.report_id) if alert.report_id else None
    tz = ZoneInfo(site.tz) if site else ZoneInfo("UTC")
    inbound = (await session.get(InboundMessage, report.inbound_id)
               if report is not None and report.inbound_id else None)
    edited = bool(inbound is not None and (inbound.payload or {}).get("edited"))
    return {"site": site, "tz": tz, "subject": patient.subject_id if patient else "-",
            "report": report, "edited": edited}


def utc_text(moment: datetime) -> str:
    """An instant as staff texts show it in UTC: `2026-03-08 18:00 UTC`."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def local_text(moment: datetime, tz: ZoneInfo) -> str:
    """An instant in a site's time, its zone named: `2026-03-09 02:00 Asia/Shanghai`."""
    return moment.astimezone(tz).strftime(f"%Y-%m-%d %H:%M {tz.key}")


def reasons_text(reasons: list[Any], language: str) -> str:
    """Reasons as staff read them: a label per code and the words that fired."""
    parts = []
    for reason in reasons:
        code = str(reason.get("code", "")) if isinstance(reason, dict) else str(reason)
        matched = reason.get("matched", []) if isinstance(reason, dict) else []
        try:
            label = catalogue.render(f"alert.reason_{code}", language)
        except catalogue.MissingMessageError:
            label = code
        parts.append(f"{label}: {', '.join(str(m) for m in matched)}" if matched else label)
    return "; ".join(parts) or "-"


def media_word(kind: object, language: str) -> str:
    """A media kind in words ("photo", "照片"); an unknown kind is a file."""
    try:
        return catalogue.render(f"media.kind_{kind}", language)
    except catalogue.MissingMessageError:
        return catalogue.render("media.kind_document", language)


def alert_params(alert: Alert, context: dict[str, Any], language: str) -> dict[str, object]:
    """Placeholders of every staff-facing alert text."""
    report: SymptomReport | None = context["report"]
    text = catalogue.shortened(report.raw_text if report else alert.summary, QUOTE_LIMIT)
    if context.get("edited"):  # the patient edited a message they had sent: say so
        text = catalogue.render("alert.edited_note", language) + " " + text
    media = (report.parsed or {}).get("media") if report is not None else None
    if media:  # a photo, a voice note...: say which, and how to see it
        note = catalogue.render("alert.media_note", language, id=alert.id, kinds=", ".join(
            media_word(m.get("kind") if isinstance(m, dict) else "", language) for m in media))
        text = f"{note} {text}".strip()
    return {
        "id": alert.id, "subject": subject_of(alert, context["subject"], language),
        "tier": catalogue.render(f"alert.tier_{alert.tier}", language),
        "reasons": catalogue.shortened(reasons_text(
            report.reasons if report else alert.reasons or [], language), REASONS_LIMIT),
        "text": text,
        "received_utc": utc_text(alert.received_at),
        "received_local": local_text(alert.received_at, context["tz"]),
        "deadline_utc": utc_text(alert.sae_deadline_at) if alert.sae_deadline_at else "",
        "page": alert.pages, "status": catalogue.render(f"alert.status_{alert.status}", language),
    }


async def _queue_staff(session: AsyncSession, alert: Alert, staff: Staff, route: Route, *,
                      key: str, message_id: str, language: str, params: dict[str, object],
                      now: datetime, lane: str = SAFETY, choices: Sequence[Choice] = ()) -> None:
    """Queue one catalogue text about an alert to a staff member by one route (buttons in a
    chat app, Telegram or WeCom; never by SMS). `language`: the reader's, for `params`."""
    buttons = () if route.channel == SMS_CHANNEL else tuple(choices)
    await outgoing.queue(session, outgoing.Recipient.staff(staff, route),
                         Reply(message_id, params, buttons), key=key, now=now, lane=lane,
                         alert_id=alert.id)


async def _enqueue_page(session: AsyncSession, alert: Alert, step: int, staff: Staff,
                        route: Route, context: dict[str, Any], *, now: datetime) -> None:
    language = catalogue.reader_language(staff.language)
    sae = "_sae" if alert.sae_deadline_at else ""
    # Staff SMS names the subject id only: never the report's words, drug, disease or trial;
    # a chat app (Telegram, WeCom) has the whole page and its buttons.
    message_id = f"alert.page_sms{sae}" if route.channel == SMS_CHANNEL else f"alert.page{sae}"
    params = alert_params(alert, context, language)
    if alert.sae_deadline_at is not None:  # the site's time, UTC beside it
        params["deadline_local"] = local_text(alert.sae_deadline_at, context["tz"])
    choices = (Choice("alert.button_ack", AlertAction("ack", alert.id).pack()),
               Choice("alert.button_resolve", AlertAction("resolve", alert.id).pack()))
    await _queue_staff(session, alert, staff, route,
                       key=f"alert:{alert.id}:page:{step}:{staff.id}:{route.channel}",
                       message_id=message_id, language=language, params=params, now=now,
                       choices=choices)


def escalation_due(now: datetime | ColumnElement[datetime]) -> ColumnElement[bool]:
    """SQL: an open alert's acknowledgement timeout has passed (an index look-up)."""
    return exists().where(Alert.status == OPEN, Alert.next_escalation_at <= now)


async def escalate_due(session: AsyncSession, protocol: Protocol, *, now: datetime,
                       limit: int = 100) -> int:
    """Page the next level of every open alert whose acknowledgement timeout has passed."""
    due = (await session.execute(
        select(Alert).where(Alert.status == OPEN, Alert.next_escalation_at <= now)
        .order_by(Alert.next_escalation_at, Alert.id).limit(limit)
        .with_for_update(skip_locked=True))).scalars().all()
    for alert in due:
        await page(session, protocol, alert, now=now)
    return len(due)


def can_see(staff: Staff, alert: Alert) -> bool:
    """Whether the staff member may see the alert (the site rule lives in study.staff_access)."""
    return staff_access.can_view(staff, alert.site_id)


async def find(session: AsyncSession, staff: Staff, alert_id: int, *,
               lock: bool = False) -> Alert:
    """An alert the staff member may see; another site's alert is 'not found', like no alert."""
    query = select(Alert).where(Alert.id == alert_id)
    if lock:
        query = query.with_for_update()
    alert = (await session.execute(query)).scalar_one_or_none()
    if alert is None or not can_see(staff, alert):
        raise AlertError("not_found", alert_id)
    return alert


async def visible(session: AsyncSession, staff: Staff, *, now: datetime,
                  limit: int = 20) -> list[Alert]:
    """Unresolved alerts of the staff member's site (all sites for an admin), oldest first."""
    query = select(Alert).where(Alert.status != RESOLVED,
                                staff_access.site_scope(staff, Alert.site_id))
    alerts = list((await session.execute(
        query.order_by(Alert.opened_at, Alert.id).limit(limit))).scalars().all())
    audit.record(session, at=now, actor=Actor.staff(staff.id), action="query", entity="alerts",
                 entity_id=staff.site_id or "*", new=f"{len(alerts)} open alerts")
    return alerts


def _may_act(staff: Staff, alert: Alert) -> None:
    if not staff_access.can_acknowledge(staff, alert.site_id):
        raise AlertError("not_permitted", alert.id)  # monitors read, never act


async def acknowledge(session: AsyncSession, staff: Staff, alert_id: int, *,
                      now: datetime) -> tuple[Alert, bool]:
    """Take responsibility for an alert: escalation stops. Returns (alert, newly acknowledged)."""
    alert = await find(session, staff, alert_id, lock=True)
    _may_act(staff, alert)
    if alert.status == RESOLVED:
        raise AlertError("already_resolved", alert.id)
    if alert.status == ACKNOWLEDGED:
        return alert, False
    audit.change(session, alert, at=now, actor=Actor.staff(staff.id), status=ACKNOWLEDGED,
                 acknowledged_at=now, acknowledged_by=staff.id, next_escalation_at=None)
    await _event(session, alert, "acknowledged", now=now, staff_id=staff.id)
    return alert, True


async def resolve(session: AsyncSession, staff: Staff, alert_id: int, note: str, *,
                  now: datetime) -> Alert:
    """Close an alert with a note of what was done (required); acknowledges it if need be."""
    alert = await find(session, staff, alert_id, lock=True)
    _may_act(staff, alert)
    if alert.status == RESOLVED:
        raise AlertError("already_resolved", alert.id)
    note = note.strip()
    if not note:
        raise AlertError("note_required", alert.id)
    actor = Actor.staff(staff.id)
    if alert.status == OPEN:
        audit.change(session, alert, at=now, actor=actor, reason="resolved without a separate "
                     "acknowledgement", status=ACKNOWLEDGED, acknowledged_at=now,
                     acknowledged_by=staff.id, next_escalation_at=None)
        await _event(session, alert, "acknowledged", now=now, staff_id=staff.id)
    audit.change(session, alert, at=now, actor=actor, reason=note, status=RESOLVED,
                 resolved_at=now, resolved_by=staff.id, resolution_note=note)
    await _event(session, alert, "resolved", now=now, staff_id=staff.id, detail=note)
    return alert


async def describe(session: AsyncSession, alert: Alert, language: str) -> dict[str, object]:
    """Placeholders for showing one alert to a staff member."""
    return alert_params(alert, await _context(session, alert), language)


async def open_routine_alert(session: AsyncSession, *, site_id: str, patient: Patient | None,
                             kind: str, summary: str, now: datetime, actor: Actor,
                             report: SymptomReport | None = None) -> Alert:
    """Open a routine alert: never paged, it waits in the site's digest until resolved."""
    alert = Alert(site_id=site_id, patient_id=patient.id if patient else None, kind=kind,
                  report_id=report.id if report else None,
                  tier=Tier.ROUTINE.value, status=OPEN, summary=summary[:1000], opened_at=now,
                  received_at=now, level=0, pages=0, next_escalation_at=None)
    await audit.create(session, alert, at=now, actor=actor, reason=f"{kind} routine")
    await _event(session, alert, "opened", now=now, detail=summary[:1000])
    return alert


async def site_contacts(session: AsyncSession, site_id: str) -> list[Staff]:
    """Who hears about a site's routine problems: its coordinators, else the next roles."""
    staff = list((await session.execute(select(Staff).where(
        Staff.site_id == site_id, Staff.active.is_(True),
        Staff.role.in_(PAGING_ROLES)).order_by(Staff.id))).scalars())
    for role in PAGING_ROLES:
        chosen = [s for s in staff if s.role == role]
        if chosen:
            return chosen
    return []


async def notify_site(session: AsyncSession, *, site_id: str, patient: Patient | None,
                      kind: str, summary: str, message_id: str, params: dict[str, object],
                      now: datetime, actor: Actor, exclude_staff: int | None = None,
                      lane: str = ROUTINE) -> Alert:
    """Open a routine alert and tell the site's coordinators once, by their first channel
    (`lane` SAFETY: not held by quiet hours, e.g. a safety message that may not have arrived).

    A `channel` parameter (telegram, sms) is shown in the reader's language.
    """
    alert = await open_routine_alert(session, site_id=site_id, patient=patient, kind=kind,
                                     summary=summary, now=now, actor=actor)
    for member in await site_contacts(session, site_id):
        routes = staff_route(member)
        if member.id == exclude_staff or not routes:
            continue
        route = routes[0]
        language = catalogue.reader_language(member.language)
        values = dict(params)
        if "channel" in values:
            values["channel"] = catalogue.render(f"delivery.channel_{values['channel']}",
                                                 language)
        await _queue_staff(session, alert, member, route,
                           key=f"notice:{kind}:{alert.id}:{member.id}:{route.channel}",
                           message_id=message_id, language=language, params=values, now=now,
                           lane=lane)
    return alert


# --- the SAE clock -----------------------------------------------------------------------------
# Acknowledging does not stop the 24-hour sponsor-report clock: until a staff member records
# "reported to sponsor" (/sae N reported, its button, `engage alert sae-reported`), reminders
# go at each of the protocol's `sae_reminder_hours` before the deadline.

SAE_ROLES = ("investigator", "pi")


def sae_reminder_due(now: datetime | ColumnElement[datetime]) -> ColumnElement[bool]:
    """SQL: an SAE candidate's next deadline reminder is due (an index look-up)."""
    return exists().where(Alert.sae_next_reminder_at <= now)


async def _sae_recipients(session: AsyncSession, alert: Alert) -> list[_Target]:
    staff = list((await session.execute(select(Staff).where(
        Staff.active.is_(True), Staff.site_id == alert.site_id, Staff.role.in_(SAE_ROLES))
        .order_by(Staff.id))).scalars())
    if alert.acknowledged_by is not None:
        acker = await session.get(Staff, alert.acknowledged_by)
        if acker is not None and acker.active and acker not in staff:
            staff.insert(0, acker)
    return [_Target(m, staff_route(m)) for m in staff if staff_route(m)]


async def send_sae_reminders(session: AsyncSession, protocol: Protocol, *, now: datetime,
                             limit: int = 50) -> int:
    """Queue every due SAE deadline reminder; the alert's next reminder is set (or none)."""
    due = (await session.execute(
        select(Alert).where(Alert.sae_next_reminder_at <= now)
        .order_by(Alert.sae_next_reminder_at, Alert.id).limit(limit)
        .with_for_update(skip_locked=True))).scalars().all()
    for alert in due:
        assert alert.sae_deadline_at is not None
        assert alert.sae_next_reminder_at is not None
        at = alert.sae_next_reminder_at
        context = await _context(session, alert)
        targets = await _sae_recipients(session, alert) or await _admins(session)
        for target in targets:
            language = catalogue.reader_language(target.staff.language)
            params = alert_params(alert, context, language)
            params["deadline_local"] = local_text(alert.sae_deadline_at, context["tz"])
            choices = (Choice("alert.button_sae_reported",
                              AlertAction("sae_reported", alert.id).pack()),)
            for route in target.routes:
                await _queue_staff(session, alert, target.staff, route,
                                   key=f"alert:{alert.id}:sae:{at.isoformat()}:"
                                   f"{target.staff.id}:{route.channel}",
                                   message_id="alert.sae_reminder", language=language,
                                   params=params, now=now, choices=choices)
        audit.change(session, alert, at=now, actor=Actor.system("sae_clock"),
                     reason=f"SAE deadline reminder for {utc_text(at)} sent",
                     sae_next_reminder_at=sae_reminder_after(protocol.escalation,
                                                             alert.sae_deadline_at, at))
        await _event(session, alert, "sae_reminder", now=now,
                     detail=f"deadline {utc_text(alert.sae_deadline_at)}; to "
                     + (", ".join(str(t.staff.id) for t in targets) or "nobody"))
    return len(due)


async def record_sae_reported(session: AsyncSession, staff: Staff | None, alert_id: int, *,
                              now: datetime, actor: Actor | None = None,
                              note: str = "") -> tuple[Alert, bool]:
    """Record that the SAE candidate was reported to the sponsor: its reminders stop.

    `staff` None: recorded from the command line by `actor`. Returns (alert, newly recorded).
    """
    if staff is not None:
        alert = await find(session, staff, alert_id, lock=True)
        _may_act(staff, alert)
    else:
        found = (await session.execute(select(Alert).where(Alert.id == alert_id)
                                       .with_for_update())).scalar_one_or_none()
        if found is None:
            raise AlertError("not_found", alert_id)
        alert = found
    if alert.sae_deadline_at is None:
        raise AlertError("not_sae", alert.id)
    if alert.sae_reported_at is not None:
        return alert, False
    who = actor or Actor.staff(staff.id if staff else 0)
    reason = "reported to sponsor" + (f": {note.strip()}" if note.strip() else "")
    audit.change(session, alert, at=now, actor=who, reason=reason, sae_reported_at=now,
                 sae_reported_by=staff.id if staff else None, sae_next_reminder_at=None)
    await _event(session, alert, "sae_reported", now=now,
                 staff_id=staff.id if staff else None, detail=reason)
    return alert, True

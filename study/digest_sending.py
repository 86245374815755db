"""A site's daily digest queued to its staff: each active coordinator, investigator and PI of the
site gets the text (split into messages under Telegram's limit) and the adherence chart as a
photo, in their chat app (Telegram, else WeCom; never by SMS). When it is due and claimed once a
day is the scheduler's (`scheduler/digest.py`); what it says is `study.digest`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from messages import catalogue
from messages.pagination import UNLIMITED_ROWS, paginate
from storage import audit
from storage.audit import Actor
from storage.models import Site, Staff
from study import chart, digest, outgoing
from study.alerts import SMS_CHANNEL
from study.outgoing import Choice, Rendered, Reply
from study.recipients import Route, staff_route
from trial.protocol import Protocol

SYSTEM = Actor.system("digest")


def digest_key(site_id: str, local_date: date) -> str:
    """The once-a-day key of a site's digest."""
    return f"digest:{site_id}:{local_date.isoformat()}"


def due_date(site: Site, protocol: Protocol, now: datetime) -> date | None:
    """The site's local date if its digest time has come today, else None."""
    return due_in(site.tz, protocol, now)


def due_in(tz: str, protocol: Protocol, now: datetime) -> date | None:
    local = now.astimezone(ZoneInfo(tz))
    return local.date() if local.time() >= protocol.digest.time else None


def _chat(staff: Staff) -> Route | None:
    """The staff member's first chat-app route (Telegram, else WeCom...): a digest is long and
    has a chart, so never an SMS."""
    return next((r for r in staff_route(staff) if r.channel != SMS_CHANNEL), None)


async def chart_png(session: AsyncSession, site: Site, local_date: date,
                    language: str) -> tuple[bytes, chart.Grid] | None:
    """The site's chart of the 14 days before `local_date`, or None for a site with nobody."""
    grid = await chart.adherence_grid(session, site.id,
                                      last_day=local_date - timedelta(days=1))
    if not grid.subjects:
        return None
    return chart.draw_chart(grid, language=language), grid


async def enqueue_chart(session: AsyncSession, site: Site, staff: Staff, local_date: date, *,
                        now: datetime, key: str,
                        drawn: dict[str, tuple[bytes, chart.Grid] | None] | None = None,
                        ) -> bool:
    """Queue the site's chart as a photo to one staff member in their chat app; False if not
    sent."""
    route = _chat(staff)
    if route is None:
        return False
    language = chart.chart_language(staff.language)
    drawn = {} if drawn is None else drawn
    if language not in drawn:
        drawn[language] = await chart_png(session, site, local_date, language)
    picture = drawn[language]
    if picture is None:
        return False
    png, grid = picture
    caption = Reply("digest.chart_caption", {"site": site.id, "start": grid.days[0].isoformat(),
                                             "end": grid.days[-1].isoformat()})
    recipient = outgoing.Recipient.staff(staff, route)
    row = await outgoing.queue(session, recipient, caption, key=key, now=now, image=png)
    return row is not None


async def send_digest(session: AsyncSession, protocol: Protocol, site: Site,
                      local_date: date, *, now: datetime,
                      recipients: Sequence[Staff] | None = None) -> int:
    """Queue a site's digest to its staff (its reports stay unreviewed until staff say so).
    `recipients`: the site's, when already read (`digest.recipients_of`)."""
    if recipients is None:
        recipients = await digest.recipients(session, site.id)
    readers = [(member, route) for member in recipients
               if (route := _chat(member)) is not None]
    if not readers:
        # Nobody can read it: its reports wait for the next digest that goes out. (Written
        # with the transaction's next statement or its commit: sites fall due together.)
        audit.record_later(session, audit.Entry(
            now, SYSTEM, "digest", "sites", site.id,
            new=f"{local_date.isoformat()}: no recipient", reason="daily digest"))
        return 0
    content = await digest.gather(session, protocol, site, now=now)
    base = digest_key(site.id, local_date)
    queued = 0
    drawn: dict[str, tuple[bytes, chart.Grid] | None] = {}
    for staff, route in readers:
        recipient = outgoing.Recipient.staff(staff, route)
        header, lines = digest.render(content, recipient.reads)
        template_id = "digest.quiet" if content.quiet else "digest.header"
        version = catalogue.template(template_id, recipient.reads).version
        listed = [r.report_id for r in (*content.overdue_reports, *content.reports)]
        for page in paginate(header, lines, rows_per_page=UNLIMITED_ROWS):
            # The last page carries "Listed reports reviewed" (the reports up to the newest
            # listed one: a report arriving later is not reviewed by it).
            choices = (Choice("digest.button_reviewed", f"alert:reviewed:{max(listed)}"),) \
                if listed and page.number == page.count else ()
            row = await outgoing.queue(
                session, recipient, Rendered(page.text, template_id, version, choices),
                key=f"{base}:{staff.id}:{page.number}", now=now)
            queued += row is not None
        queued += await enqueue_chart(session, site, staff, local_date, now=now,
                                      key=f"{base}:{staff.id}:chart", drawn=drawn)
    audit.record(session, at=now, actor=SYSTEM, action="digest", entity="sites",
                 entity_id=site.id, new=f"{local_date.isoformat()}: {queued} messages, "
                 f"{digest.listed(content)} reports awaiting review",
                 reason="daily digest")
    return queued

"""The demo's ending: the adherence table (the one `engage report adherence` prints), the alert
log with every escalation step and acknowledgement, and one site's digest as it was sent, its
chart written to a PNG file."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sqlalchemy import select

from engage.tables import adherence_table
from storage.db import Database
from storage.models import Alert, AlertEvent, OutboundMessage, Patient, Site, Staff
from study.adherence import adherence_report
from trial.protocol import Protocol


@dataclass(frozen=True)
class SentDigest:
    """One digest as it went to one staff member: its pages and its chart."""

    site_id: str
    key: str
    staff: str
    pages: list[str]
    chart: bytes | None
    channel: str = "telegram"  # the channel it went by (Telegram or WeCom)


async def print_adherence(console: Console, db: Database, protocol: Protocol,
                          now: datetime) -> None:
    async with db.read() as session:
        report = await adherence_report(session, protocol, now=now)
    console.print(escape(adherence_table(report)), soft_wrap=True, highlight=False)


async def print_alerts(console: Console, db: Database) -> int:
    """Every alert and its events in order; returns how many alerts there were."""
    async with db.read() as session:
        rows = (await session.execute(
            select(Alert, Patient.subject_id, Site.tz).join(Site, Site.id == Alert.site_id)
            .outerjoin(Patient, Patient.id == Alert.patient_id)
            .order_by(Alert.opened_at, Alert.id))).all()
        events = (await session.execute(
            select(AlertEvent, Staff.role, Staff.name, Staff.site_id)
            .outerjoin(Staff, Staff.id == AlertEvent.staff_id)
            .order_by(AlertEvent.alert_id, AlertEvent.step))).all()
    by_alert: dict[int, list[str]] = {}
    for event, role, name, site in events:
        tz = next((t for a, _, t in rows if a.id == event.alert_id), "UTC")
        who = f" by {site}-{role} ({name})" if role else ""
        detail = f": {event.detail}" if event.detail and event.kind != "opened" else ""
        by_alert.setdefault(event.alert_id, []).append(
            f"{_local(event.at, tz)}  {event.kind}{who} (level {event.level}){detail}")
    table = Table(show_lines=True, expand=False)
    for column in ("alert", "subject", "kind", "tier", "status", "steps (local time)"):
        table.add_column(column, overflow="fold")
    for alert, subject, _ in rows:
        sae = f"\nSAE report due {alert.sae_deadline_at:%Y-%m-%d %H:%M} UTC" \
            if alert.sae_deadline_at else ""
        table.add_row(f"#{alert.id}", subject or "-", alert.kind, alert.tier + sae,
                      alert.status, escape("\n".join(by_alert.get(alert.id, []))))
    console.print(table)
    return len(rows)


async def last_digest(db: Database, site_id: str) -> SentDigest | None:
    """The latest digest of a site as sent to its first coordinator (or anyone who got it)."""
    async with db.read() as session:
        rows = (await session.execute(
            select(OutboundMessage, Staff).join(Staff, Staff.id == OutboundMessage.staff_id)
            .where(OutboundMessage.dedupe_key.like(f"digest:{site_id}:%"),
                   OutboundMessage.status.in_(("sent", "delivered", "read")))
            .order_by(OutboundMessage.id.desc()))).all()
    if not rows:
        return None
    newest = rows[0][0].dedupe_key.split(":")
    day = newest[2]
    members = sorted({staff for _, staff in rows}, key=lambda s: (s.role != "coordinator", s.id))
    member = members[0]
    prefix = f"digest:{site_id}:{day}:{member.id}:"
    mine = sorted((row for row, _ in rows if row.dedupe_key.startswith(prefix)),
                  key=lambda row: row.id)
    pages = [row.body for row in mine if row.image is None]
    chart = next((row.image for row in mine if row.image is not None), None)
    return SentDigest(site_id, f"digest:{site_id}:{day}",
                      f"{site_id}-{member.role} ({member.name})", pages, chart,
                      mine[0].channel if mine else "telegram")


def write_chart(digest: SentDigest, folder: Path) -> Path | None:
    """The digest's chart as a PNG file next to the database."""
    if digest.chart is None:
        return None
    day = digest.key.rsplit(":", 1)[-1]
    path = folder / f"engage-demo-digest-{digest.site_id}-{day}.png"
    path.write_bytes(digest.chart)
    return path.resolve()


def _local(moment: datetime, tz: str) -> str:
    local = moment.astimezone(ZoneInfo(tz))
    return f"{local:%a %d %b %H:%M}{local:%z}"[:-2]

"""The daily digest: once per site per local day at the protocol's time, to the site's staff,
with the adherence chart as a photo; its content; a quiet day in one line."""

from __future__ import annotations

import io
from datetime import date, timedelta

from PIL import Image
from sqlalchemy import select

from engage.clock import SimulatedClock
from messages import catalogue
from scheduler import digest as digest_step
from scheduler.tick import run_tick
from storage.audit import Actor
from storage.db import Database
from storage.models import OutboundMessage, SymptomReport, TickRun
from study import chart, reports
from study import digest as site_digest
from tests.factories import (
    T0,
    alert_row,
    dose_row,
    patient_row,
    report_row,
    site_row,
    staff_row,
    visit_row,
)
from trial.protocol import Protocol

TODAY = date(2026, 3, 2)  # T0 is 08:00 in Shanghai on this day


async def digest_rows(db: Database) -> list[OutboundMessage]:
    async with db.read() as session:
        return list((await session.execute(
            select(OutboundMessage).where(OutboundMessage.dedupe_key.like("digest:%"))
            .order_by(OutboundMessage.id))).scalars().all())


async def test_digest_arrives_once_a_day_at_each_sites_local_time(
        db: Database, protocol: Protocol) -> None:
    clock = SimulatedClock(T0 - timedelta(minutes=1))
    async with db.write() as session:
        await site_row(session, "BJ01")
        await site_row(session, "NY01", tz="America/New_York")
        bj = await staff_row(session, "BJ01", "coordinator")
        ny = await staff_row(session, "NY01", "coordinator")
        await patient_row(session, "BJ01-001", "BJ01", telegram_id=501)
        await patient_row(session, "NY01-001", "NY01", telegram_id=502,
                          tz="America/New_York")
    # 07:59 in Shanghai, 18:59 on 1 March in New York: only New York's (late) digest is due.
    await run_tick(db, protocol, clock.now())
    assert {r.staff_id for r in await digest_rows(db)} == {ny.id}
    count = len(await digest_rows(db))
    clock.advance(timedelta(minutes=1))  # 08:00 in Shanghai
    await run_tick(db, protocol, clock.now())
    await run_tick(db, protocol, clock.now())  # the same instant again: nothing new
    rows = await digest_rows(db)
    bj_rows = [r for r in rows if r.staff_id == bj.id]
    assert len(rows) == count + len(bj_rows)
    assert [r.dedupe_key for r in bj_rows] == [f"digest:BJ01:2026-03-02:{bj.id}:1",
                                               f"digest:BJ01:2026-03-02:{bj.id}:chart"]
    assert bj_rows[1].image is not None
    assert bj_rows[0].image is None
    assert all(r.due_at == clock.now() and r.channel == "telegram" for r in bj_rows)
    clock.advance(timedelta(hours=13))  # 08:00 in New York on 2 March; 21:00 in Shanghai
    await run_tick(db, protocol, clock.now())
    keys = {r.dedupe_key.rsplit(":", 2)[0] for r in await digest_rows(db)}
    assert keys == {"digest:NY01:2026-03-01", "digest:BJ01:2026-03-02",
                    "digest:NY01:2026-03-02"}
    clock.advance(timedelta(hours=11))  # 08:00 in Shanghai on 3 March
    await run_tick(db, protocol, clock.now())
    async with db.read() as session:
        runs = set((await session.execute(select(TickRun.key).where(
            TickRun.key.like("digest:%")))).scalars().all())
    assert runs == {"digest:NY01:2026-03-01", "digest:BJ01:2026-03-02",
                    "digest:NY01:2026-03-02", "digest:BJ01:2026-03-03"}


async def test_digest_goes_to_active_site_staff_on_telegram_with_the_chart(
        db: Database, protocol: Protocol) -> None:
    async with db.write() as session:
        await site_row(session, "BJ01")
        await site_row(session, "SH02")
        coordinator = await staff_row(session, "BJ01", "coordinator", language="zh")
        investigator = await staff_row(session, "BJ01", "investigator")
        pi = await staff_row(session, "BJ01", "pi")
        await staff_row(session, "BJ01", "monitor")
        await staff_row(session, "BJ01", "coordinator", active=False)
        await staff_row(session, "BJ01", "coordinator", telegram=False)
        await staff_row(session, "SH02", "coordinator")
        await staff_row(session, None, "admin")
        patient = await patient_row(session, "BJ01-001", "BJ01", telegram_id=601)
        for back in range(1, 15):
            await dose_row(session, patient, TODAY - timedelta(days=back),
                           ["taken", "missed", "no_response"][back % 3])
    assert await digest_step.plan_digests(db, protocol, T0) > 0
    rows = [r for r in await digest_rows(db) if r.dedupe_key.startswith("digest:BJ01:")]
    assert {r.staff_id for r in rows} == {coordinator.id, investigator.id, pi.id}
    photos = [r for r in rows if r.image is not None]
    assert len(photos) == 3
    zh_photo = next(p for p in photos if p.staff_id == coordinator.id)
    assert zh_photo.language == "zh"
    assert "BJ01" in zh_photo.body
    # The photo is the chart drawn from the grid of the dose records (the 14 days before today).
    async with db.read() as session:
        grid = await chart.adherence_grid(session, "BJ01", last_day=TODAY - timedelta(days=1))
    assert grid.cells[0] == tuple(["taken", "missed", "no_response"][back % 3]
                                  for back in range(14, 0, -1))
    image = Image.open(io.BytesIO(zh_photo.image or b""))
    assert image.format == "PNG"
    assert image.size == chart.chart_size(1)
    assert zh_photo.image == chart.draw_chart(grid, language="zh")


async def test_digest_content_and_routine_reports_reviewed_once(
        db: Database, protocol: Protocol) -> None:
    async with db.write() as session:
        site = await site_row(session, "BJ01")
        coordinator = await staff_row(session, "BJ01", "coordinator")
        flagged = await patient_row(session, "BJ01-001", "BJ01", telegram_id=701)
        opted = await patient_row(session, "BJ01-002", "BJ01", phone="+8613800000002",
                                  opted_out=True)
        await patient_row(session, "BJ01-003", "BJ01")  # no Telegram, no phone
        for back in (1, 2):
            await dose_row(session, flagged, TODAY - timedelta(days=back), "no_response")
        await alert_row(session, flagged, at=T0 - timedelta(hours=26), summary="发烧 38.6")
        await alert_row(session, opted, status="resolved", summary="closed one")
        report = await report_row(session, flagged, "头痛两天", at=T0 - timedelta(hours=5))
        await report_row(session, flagged, "胸痛", tier="emergency")
        await visit_row(session, flagged, "W8", TODAY + timedelta(days=3))
        await visit_row(session, opted, "W4", TODAY - timedelta(days=4), status="missed")
        await visit_row(session, opted, "W12", TODAY + timedelta(days=20))
    await digest_step.plan_digests(db, protocol, T0)
    [text, photo] = [r for r in await digest_rows(db) if r.staff_id == coordinator.id]
    body = text.body
    assert body.startswith(catalogue.render("digest.header", "en", site="BJ01",
                                            date="2026-03-02", patients=3))
    assert "#1 BJ01-001 · same-day · not acknowledged · 26 h · 发烧 38.6" in body
    assert "closed one" not in body
    assert "BJ01-001 03-02 03:00: 头痛两天" in body
    assert "胸痛" not in body
    assert "BJ01-001: <80% over 7 days, 2+ days missed/unanswered in a row" in body
    assert "BJ01-002 W4, due 2026-02-26" in body
    assert "2026-03-05 BJ01-001 W8" in body
    assert "W12" not in body
    assert "Opted out of messages (1):\nBJ01-002" in body
    assert "Unreachable on every channel (1):\nBJ01-003" in body
    assert photo.image is not None
    async with db.read() as session:
        listed = await session.get(SymptomReport, report.id)
        assert listed is not None
        assert (listed.reviewed_at, listed.reviewed_by) == (None, None)  # listing is no review
    # Issue 17: the next day's digest lists it again, until a staff member reviews it.
    async with db.write() as session:
        content = await site_digest.gather(session, protocol, site, now=T0 + timedelta(days=1))
        assert [r.report_id for r in content.reports] == [report.id]
        listed = await session.get(SymptomReport, report.id)
        assert listed is not None
        assert await reports.mark_reviewed(session, [listed], staff_id=coordinator.id, now=T0,
                                           actor=Actor.staff(coordinator.id),
                                           reason="/reviewed") == 1
    async with db.write() as session:
        content = await site_digest.gather(session, protocol, site, now=T0 + timedelta(days=2))
    assert content.reports == []


async def test_quiet_day_is_one_line(db: Database, protocol: Protocol) -> None:
    async with db.write() as session:
        await site_row(session, "BJ01")
        coordinator = await staff_row(session, "BJ01", "coordinator", language="zh")
        patient = await patient_row(session, "BJ01-001", "BJ01", telegram_id=801)
        for back in range(1, 8):
            await dose_row(session, patient, TODAY - timedelta(days=back), "taken")
    await digest_step.plan_digests(db, protocol, T0)
    [text, _photo] = [r for r in await digest_rows(db) if r.staff_id == coordinator.id]
    assert text.body == catalogue.render("digest.quiet", "zh", site="BJ01", date="2026-03-02",
                                         patients=1)
    assert "\n" not in text.body


async def test_a_site_with_nobody_to_read_it_leaves_reports_unreviewed(
        db: Database, protocol: Protocol) -> None:
    async with db.write() as session:
        await site_row(session, "BJ01")
        await staff_row(session, "BJ01", "monitor")
        await staff_row(session, "BJ01", "coordinator", telegram=False)
        patient = await patient_row(session, "BJ01-001", "BJ01", telegram_id=901)
        report = await report_row(session, patient, "乏力")
    assert await digest_step.plan_digests(db, protocol, T0) == 0
    assert await digest_rows(db) == []
    async with db.read() as session:
        unreviewed = await session.get(SymptomReport, report.id)
        assert unreviewed is not None
        assert unreviewed.reviewed_at is None


async def test_reports_unreviewed_for_two_working_days_come_first_and_sae_clocks_are_listed(
        db: Database, protocol: Protocol) -> None:
    """Issue 17: routine reports nobody reviewed for more than two working days open the
    digest; possible SAEs not yet reported to the sponsor are listed with their deadline."""
    async with db.write() as session:
        site = await site_row(session, "BJ01")
        await staff_row(session, "BJ01", "coordinator")
        patient = await patient_row(session, "BJ01-001", "BJ01", telegram_id=711)
        # T0 is a Monday: last Wednesday is three working days back, last Friday one.
        old = await report_row(session, patient, "口腔溃疡", at=T0 - timedelta(days=5))
        recent = await report_row(session, patient, "乏力", at=T0 - timedelta(days=3))
        sae = await alert_row(session, patient, at=T0 - timedelta(hours=2))
        sae.sae_deadline_at = T0 + timedelta(hours=22)
        content = await site_digest.gather(session, protocol, site, now=T0)
    assert [r.report_id for r in content.overdue_reports] == [old.id]
    assert [r.report_id for r in content.reports] == [recent.id]
    assert [(s.alert_id, s.deadline) for s in content.sae_clocks] == [
        (sae.id, T0 + timedelta(hours=22))]
    _header, lines = site_digest.render(content, "en")
    body = "\n".join(lines)
    assert lines[1] == catalogue.render("digest.section_reports_overdue", "en", count=1)
    assert f"#{old.id} BJ01-001" in lines[2]
    assert catalogue.render("digest.sae_row", "en", id=sae.id, subject="BJ01-001",
                            deadline_local="03-03 06:00", deadline_utc="03-02 22:00 UTC") in body
    assert site_digest.working_days_between(date(2026, 2, 27), date(2026, 3, 2)) == 1


async def test_the_digest_button_reviews_the_listed_reports_only(
        db: Database, protocol: Protocol) -> None:
    from bot import staff_alerts
    from messages.actions import AlertAction

    async with db.write() as session:
        await site_row(session, "BJ01")
        coordinator = await staff_row(session, "BJ01", "coordinator")
        patient = await patient_row(session, "BJ01-001", "BJ01", telegram_id=721)
        listed = await report_row(session, patient, "头痛", at=T0 - timedelta(hours=3))
    await digest_step.plan_digests(db, protocol, T0)
    [text, _photo] = [r for r in await digest_rows(db) if r.staff_id == coordinator.id]
    assert [c["action"] for c in text.choices] == [f"alert:reviewed:{listed.id}"]
    async with db.write() as session:
        later = await report_row(session, patient, "乏力", at=T0 + timedelta(minutes=5))
        staff = await session.get(type(coordinator), coordinator.id)
        assert staff is not None
        replies = await staff_alerts.reviewed_button(session, protocol, staff,
                                                     AlertAction("reviewed", listed.id),
                                                     now=T0 + timedelta(minutes=10))
    assert [(r.message_id, r.params) for r in replies] == [
        ("alert.reports_reviewed", {"count": 1})]
    async with db.read() as session:
        first = await session.get(SymptomReport, listed.id)
        second = await session.get(SymptomReport, later.id)
    assert first is not None
    assert second is not None
    assert (first.reviewed_by, second.reviewed_by) == (coordinator.id, None)

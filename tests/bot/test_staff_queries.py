"""Staff commands through the registry: scoping, audit, pagination, figures, the patient card."""

from __future__ import annotations

from datetime import date, timedelta

from sqlalchemy import select

from bot.staff import STAFF_COMMANDS
from messages import catalogue
from messages.channel import Choice
from messages.pagination import TELEGRAM_LIMIT
from storage.db import Database
from storage.models import AuditEntry, OutboundMessage, Patient, Staff
from study.adherence import patient_adherence
from study.replies import Reply
from tests.factories import (
    T0,
    alert_row,
    dose_row,
    patient_row,
    site_row,
    staff_row,
    visit_row,
)
from trial.protocol import Protocol

NOW = T0 + timedelta(hours=6)  # 14:00 in Shanghai on 2026-03-02
TODAY = date(2026, 3, 2)
_chats = iter(range(10_000, 100_000))
STATES = ["taken", "taken", "late", "taken", "skipped", "missed", "no_response", "taken"]


async def run(db: Database, protocol: Protocol, staff: Staff, command: str,
              args: str = "") -> list[Reply]:
    async with db.write() as session:
        return await STAFF_COMMANDS.commands[command](session, protocol, staff, args, now=NOW)


async def press(db: Database, protocol: Protocol, staff: Staff, action: str) -> list[Reply]:
    found = STAFF_COMMANDS.find_action(action)
    assert found is not None, action
    handler, payload = found
    async with db.write() as session:
        return await handler(session, protocol, staff, payload, now=NOW)


def text(reply: Reply, language: str = "en") -> str:
    return catalogue.render(reply.message_id, language, **reply.params)


async def seed_site(db: Database, site: str, patients: int) -> None:
    async with db.write() as session:
        await site_row(session, site)
        for n in range(patients):
            patient = await patient_row(session, f"{site}-{n:03d}", site,
                                        baseline=date(2026, 1, 5), telegram_id=next(_chats))
            for back in range(1, 29):
                await dose_row(session, patient, TODAY - timedelta(days=back),
                               STATES[(back + n) % len(STATES)])
            await dose_row(session, patient, TODAY, "reminded")


async def query_audits(db: Database) -> list[AuditEntry]:
    async with db.read() as session:
        return list((await session.execute(select(AuditEntry).where(
            AuditEntry.action == "query").order_by(AuditEntry.id))).scalars().all())


async def test_site_table_of_30_patients_pages_under_the_limit_with_buttons(
        db: Database, protocol: Protocol) -> None:
    await seed_site(db, "BJ01", 30)
    async with db.write() as session:
        coordinator = await staff_row(session, "BJ01", "coordinator")
    first = await run(db, protocol, coordinator, "adherence")
    assert len(first) == 1
    pages = [first[0]]
    while True:
        nexts = [c for c in pages[-1].choices if c.action.endswith(f":{len(pages) + 1}")]
        if not nexts:
            break
        assert nexts[0].action == f"page:adherence:{len(pages) + 1}"
        pages += await press(db, protocol, coordinator, nexts[0].action)
    assert len(pages) >= 2
    lines = []
    for n, reply in enumerate(pages, start=1):
        assert reply.params["page"] == n
        assert reply.params["pages"] == len(pages)
        for language in ("en", "zh"):
            assert len(text(reply, language)) < TELEGRAM_LIMIT
        lines += [line for line in str(reply.params["body"]).split("\n")
                  if line.startswith("BJ01-")]
    assert [line.split(" ")[0] for line in lines] == [f"BJ01-{n:03d}" for n in range(30)]
    # The last page has only a Previous button.
    assert [c.action for c in pages[-1].choices] == [f"page:adherence:{len(pages) - 1}"]
    assert all(isinstance(c, Choice) and c.label for c in pages[0].choices)

    # The figures are the dose module's, over the last 7 and 28 days.
    async with db.read() as session:
        patient = (await session.execute(select(Patient).where(
            Patient.subject_id == "BJ01-007"))).scalar_one()
        week = await patient_adherence(session, protocol, patient, now=NOW,
                                       start=TODAY - timedelta(days=6))
        month = await patient_adherence(session, protocol, patient, now=NOW,
                                        start=TODAY - timedelta(days=27))

    def pct(value: float | None) -> str:
        return "–" if value is None else str(round(value * 100))

    row = next(line for line in lines if line.startswith("BJ01-007"))
    expected = (f"{pct(week.counts.confirmed_adherence)}/{pct(week.counts.response_rate)}/"
                f"{pct(week.counts.worst_case)} · {pct(month.counts.confirmed_adherence)}/"
                f"{pct(month.counts.response_rate)}/{pct(month.counts.worst_case)}")
    assert expected in row
    assert month.flags.any
    assert "⚑" in row


async def test_other_sites_subject_or_site_is_not_found_and_audited(
        db: Database, protocol: Protocol) -> None:
    await seed_site(db, "BJ01", 1)
    await seed_site(db, "SH02", 1)
    async with db.write() as session:
        coordinator = await staff_row(session, "BJ01", "coordinator")
    other = await run(db, protocol, coordinator, "patient", "SH02-000")
    missing = await run(db, protocol, coordinator, "patient", "ZZ09-999")
    assert other == [Reply("staff.not_found", {"query": "SH02-000"})]
    assert missing == [Reply("staff.not_found", {"query": "ZZ09-999"})]
    assert (await run(db, protocol, coordinator, "adherence", "SH02-000"))[0].message_id \
        == "staff.not_found"
    assert (await run(db, protocol, coordinator, "adherence", "SH02"))[0].message_id \
        == "staff.not_found"
    assert (await run(db, protocol, coordinator, "digest", "SH02"))[0].message_id \
        == "staff.not_found"
    audits = await query_audits(db)
    assert [(a.entity_id, a.field, bool(a.reason)) for a in audits] == [
        ("SH02-000", "patient", True), ("ZZ09-999", "patient", True),
        ("SH02-000", "adherence", True), ("SH02", "adherence", True),
        ("SH02", "digest", True)]
    assert all(a.actor_id == str(coordinator.id) and a.at == NOW for a in audits)


async def test_monitor_reads_own_site_and_admin_reads_every_site(
        db: Database, protocol: Protocol) -> None:
    await seed_site(db, "BJ01", 2)
    await seed_site(db, "SH02", 2)
    async with db.write() as session:
        monitor = await staff_row(session, "BJ01", "monitor")
        admin = await staff_row(session, None, "admin")
    card = await run(db, protocol, monitor, "patient", "BJ01-001")
    assert card[0].message_id == "staff.patient_card"
    assert (await run(db, protocol, monitor, "patient", "SH02-001"))[0].message_id \
        == "staff.not_found"
    everything = await run(db, protocol, admin, "adherence")
    body = str(everything[0].params["body"])
    assert "BJ01-000" in body
    assert "SH02-001" in body
    assert (await run(db, protocol, admin, "patient", "SH02-001"))[0].message_id \
        == "staff.patient_card"
    audits = await query_audits(db)
    assert [(a.actor_id, a.entity_id, a.reason is None) for a in audits] == [
        (str(monitor.id), "BJ01-001", True), (str(monitor.id), "SH02-001", False),
        (str(admin.id), "*", True), (str(admin.id), "SH02-001", True)]


async def test_subject_day_by_day_matches_the_dose_records(
        db: Database, protocol: Protocol) -> None:
    await seed_site(db, "BJ01", 1)
    async with db.write() as session:
        coordinator = await staff_row(session, "BJ01", "coordinator", language="zh")
    replies = await run(db, protocol, coordinator, "adherence", "BJ01-000")
    assert len(replies) == 1
    assert replies[0].message_id == "staff.text"
    body = str(replies[0].params["body"]).split("\n")
    days = [line for line in body if line.startswith("2026-")]
    assert len(days) == 28
    expected = {TODAY - timedelta(days=back): STATES[back % len(STATES)]
                for back in range(1, 28)}
    expected[TODAY] = "open"
    for line in days:
        day = date.fromisoformat(line[:10])
        word = catalogue.render(f"digest.cell_{expected[day]}", "zh")
        assert word in line, line


async def test_patient_card_shows_reachability_next_dose_visit_and_open_alerts(
        db: Database, protocol: Protocol) -> None:
    async with db.write() as session:
        await site_row(session, "BJ01")
        coordinator = await staff_row(session, "BJ01", "coordinator")
        patient = await patient_row(session, "BJ01-001", "BJ01", phone="+8613800000001",
                                    opted_out=True)
        await dose_row(session, patient, TODAY, "reminded")
        await visit_row(session, patient, "W8", TODAY + timedelta(days=3))
        await alert_row(session, patient, at=NOW - timedelta(hours=3), summary="fever 38.6")
        await alert_row(session, patient, status="resolved", summary="old one")
    [card] = await run(db, protocol, coordinator, "patient", "BJ01-001")
    rendered = text(card)
    assert "opted out" in rendered
    assert "Telegram: not set up; SMS: reachable" in rendered
    assert "Next dose: 2026-03-02 09:00 (reminded, awaiting an answer)" in rendered
    assert "W8 on 2026-03-05" in rendered
    assert "fever 38.6" in rendered
    assert "3 h" in rendered
    assert "old one" not in rendered
    assert (await run(db, protocol, coordinator, "patient", ""))[0].message_id \
        == "staff.usage_patient"


async def test_visits_lists_upcoming_within_days_and_recently_missed(
        db: Database, protocol: Protocol) -> None:
    async with db.write() as session:
        await site_row(session, "BJ01")
        await site_row(session, "SH02")
        coordinator = await staff_row(session, "BJ01", "coordinator")
        a = await patient_row(session, "BJ01-001", "BJ01")
        b = await patient_row(session, "BJ01-002", "BJ01")
        c = await patient_row(session, "SH02-001", "SH02")
        await visit_row(session, a, "W8", TODAY + timedelta(days=2))
        await visit_row(session, b, "W12", TODAY + timedelta(days=10))
        await visit_row(session, b, "W4", TODAY - timedelta(days=5), status="missed")
        await visit_row(session, a, "W4", TODAY - timedelta(days=3), status="done")
        await visit_row(session, c, "W8", TODAY + timedelta(days=1))
    [week] = await run(db, protocol, coordinator, "visits")
    body = text(week)
    assert "2026-03-04 BJ01-001 W8" in body
    assert "W12" not in body
    assert "SH02" not in body
    assert "BJ01-002 W4" in body
    assert "Missed" in body
    [fortnight] = await run(db, protocol, coordinator, "visits", "14")
    assert "2026-03-12 BJ01-002 W12" in text(fortnight)
    assert (await run(db, protocol, coordinator, "visits", "abc"))[0].message_id \
        == "staff.usage_visits"


async def test_digest_command_answers_now_without_marking_reports(
        db: Database, protocol: Protocol) -> None:
    await seed_site(db, "BJ01", 2)
    async with db.write() as session:
        coordinator = await staff_row(session, "BJ01", "coordinator")
    replies = await run(db, protocol, coordinator, "digest")
    assert replies
    assert all(r.message_id == "staff.text" for r in replies)
    assert "BJ01" in str(replies[0].params["body"])
    async with db.read() as session:
        photos = (await session.execute(select(OutboundMessage).where(
            OutboundMessage.image.is_not(None)))).scalars().all()
    assert len(photos) == 1
    assert photos[0].staff_id == coordinator.id
    assert photos[0].image is not None
    assert photos[0].image.startswith(b"\x89PNG")

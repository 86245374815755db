"""study.outgoing: the one place a message is rendered and queued (issue 19 item 1)."""

from __future__ import annotations

from sqlalchemy import select

from engage.clock import SimulatedClock
from messages import catalogue
from storage.db import Database
from storage.models import OutboundMessage, Patient, Staff
from study import outgoing
from study.outgoing import Choice, Recipient, Rendered, Reply
from study.recipients import Route
from tests.workers.dispatch_support import add_patient, seed_site


async def _rows(db: Database) -> list[OutboundMessage]:
    async with db.read() as session:
        return list((await session.execute(
            select(OutboundMessage).order_by(OutboundMessage.id))).scalars())


async def test_queue_renders_in_the_readers_language_with_the_one_fallback(
        db: Database, clock: SimulatedClock) -> None:
    now = clock.now()
    await seed_site(db, now)
    async with db.write() as session:
        member = (await session.execute(select(Staff))).scalars().one()
        member.language = "fr"  # no catalogue: the reader's language falls back to zh
        reply = Reply("digest.chart_caption", {"site": "S01", "start": "a", "end": "b"},
                      choices=(Choice("digest.button_reviewed", "alert:reviewed:1"),
                               Choice("Already text", "page:alerts:2", "2")))
        first = await outgoing.queue(session, Recipient.staff(member, Route("telegram", "5")),
                                     reply, key="digest:S01:2026-03-02:1:chart", now=now)
        again = await outgoing.queue(session, Recipient.staff(member, Route("telegram", "5")),
                                     reply, key="digest:S01:2026-03-02:1:chart", now=now)
    assert first is not None
    assert again is None  # a key is queued once
    (row,) = await _rows(db)
    assert (row.language, row.lane, row.kind, row.channel, row.address) == (
        "zh", "routine", "digest", "telegram", "5")
    assert row.body == catalogue.render("digest.chart_caption", "zh", site="S01", start="a",
                                        end="b")
    assert row.template_version == catalogue.template("digest.chart_caption", "zh").version
    assert row.choices == [
        {"label": catalogue.render("digest.button_reviewed", "zh"),
         "action": "alert:reviewed:1", "sms_word": ""},
        {"label": "Already text", "action": "page:alerts:2", "sms_word": "2"}]
    assert row.due_at == now
    assert row.staff_id is not None
    assert row.patient_id is None


async def test_a_patient_by_their_route_safety_replies_even_when_paused(
        db: Database, clock: SimulatedClock) -> None:
    now = clock.now()
    await seed_site(db, now)
    pid = await add_patient(db, now, "S01-001", telegram_id=None, phone="+8613800138000",
                            status="paused")
    async with db.write() as session:
        patient = await session.get(Patient, pid)
        assert patient is not None
        assert Recipient.patient(patient) is None  # paused: nothing routine
        recipient = Recipient.patient(patient, safety=True)
        assert recipient is not None
        urgent = Reply("report.reply_emergency", safety=True)
        planned = [outgoing.plan(recipient, urgent, key=f"reply:7:{n}", now=now)
                   for n in range(2)]
        planned.append(outgoing.plan(recipient, Rendered("text", "visit.notice", "v1"),
                                     key="visit:1:r0:d3", now=now, due_at=now, lane="routine",
                                     visit_id=None))
        ids = await outgoing.queue_many(session, [*planned, planned[0]], now=now)
    assert len(ids) == 3
    rows = await _rows(db)
    assert [(r.kind, r.lane, r.channel, r.language, r.patient_id) for r in rows] == [
        ("reply", "safety", "sms", "en", pid), ("reply", "safety", "sms", "en", pid),
        ("visit", "routine", "sms", "en", pid)]
    assert rows[0].body == catalogue.render("report.reply_emergency", "en")
    assert (rows[2].body, rows[2].template_id, rows[2].template_version) == (
        "text", "visit.notice", "v1")

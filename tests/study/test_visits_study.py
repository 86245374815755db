"""Visit rows, moves, completion, missed windows and notice planning on both backends."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from sqlalchemy import select, text, update

from messages import catalogue, sms
from storage.audit import Actor
from storage.db import Database
from storage.models import (
    Alert,
    AlertEvent,
    AuditEntry,
    DeliveryEvent,
    OutboundMessage,
)
from study import visits
from study.visits import VisitError
from tests.e2e.test_visits_simulation import holding_doses
from tests.study import visits_support as support
from trial.protocol import Localized, Protocol, SiteText

T0 = datetime(2026, 2, 20, 2, 0, tzinfo=UTC)
BASELINE = date(2026, 3, 2)  # W4 on Mon 2026-03-30, window 03-27..04-02
STAFF = Actor.staff(1)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


async def _setup(db: Database, protocol: Protocol, **fields: object) -> int:
    await support.site(db, T0)
    patient = await support.patient(db, protocol, T0, "BJ01-001", baseline=BASELINE,
                                    phone="+8613800000001", **fields)
    return patient.id


async def test_enrolment_stores_every_protocol_visit(db: Database, protocol: Protocol) -> None:
    patient_id = await _setup(db, protocol)
    async with db.read() as session:
        rows = await visits.patient_visits(session, patient_id)
        created = (await session.execute(select(AuditEntry).where(
            AuditEntry.entity == "visits"))).scalars().all()
    assert [v.name for v in rows] == [t.name for t in protocol.visits.table]
    assert all(v.scheduled_date == v.target_date and v.status == "planned" and v.revision == 0
               and not v.out_of_window for v in rows)
    assert (rows[2].name, rows[2].window_start, rows[2].window_end) == (
        "W4", date(2026, 3, 27), date(2026, 4, 2))
    assert len(created) == 14
    assert {e.reason for e in created} == {"enrolment"}


async def test_a_move_replans_notices_for_the_new_date_only(db: Database,
                                                            protocol: Protocol) -> None:
    patient_id = await _setup(db, protocol)
    async with db.write() as session:  # Fri 03-27 10:00 Beijing: the 3-day notice of W4
        assert await visits.plan_notices(session, protocol, utc(2026, 3, 27, 2)) == 1
    async with db.write() as session:
        patient = await visits.find_patient(session, "BJ01-001")
        change = await visits.move_visit(session, protocol, patient, "w4", date(2026, 4, 1),
                                         reason="patient travelling", now=utc(2026, 3, 27, 3),
                                         actor=STAFF)
    assert (change.old_date, change.new_date, change.out_of_window,
            change.cancelled_notices) == (date(2026, 3, 30), date(2026, 4, 1), False, 1)
    for now in (utc(2026, 3, 29, 1), utc(2026, 3, 29, 2), utc(2026, 3, 31, 1),
                utc(2026, 3, 31, 5)):
        async with db.write() as session:
            await visits.plan_notices(session, protocol, now)
    rows = await support.visit_messages(db)
    assert [(m.dedupe_key.split(":", 2)[2], m.status, m.due_at) for m in rows] == [
        ("r0:d3", "cancelled", utc(2026, 3, 27, 1)),
        ("r1:d3", "queued", utc(2026, 3, 29, 1)),  # 09:00 Beijing, 3 days before 04-01
        ("r1:d1", "queued", utc(2026, 3, 31, 1)),
    ]
    async with db.read() as session:
        w4 = await support.visit(session, patient_id, "W4")
        trail = (await session.execute(select(AuditEntry).where(
            AuditEntry.entity == "visits", AuditEntry.entity_id == str(w4.id),
            AuditEntry.action == "update"))).scalars().all()
        events = (await session.execute(select(DeliveryEvent))).scalars().all()
    assert (w4.scheduled_date, w4.revision, w4.status) == (date(2026, 4, 1), 1, "planned")
    moved = {e.field: (e.old_value, e.new_value, e.reason, e.actor_kind) for e in trail}
    assert moved["scheduled_date"] == ("2026-03-30", "2026-04-01", "patient travelling", "staff")
    assert moved["revision"][:2] == ("0", "1")
    assert [(e.status, e.detail) for e in events] == [("cancelled", "visit moved to 2026-04-01")]


async def test_a_sent_notice_is_never_rewritten_by_a_move(db: Database,
                                                          protocol: Protocol) -> None:
    await _setup(db, protocol)
    async with db.write() as session:
        await visits.plan_notices(session, protocol, utc(2026, 3, 27, 2))
        await session.execute(update(OutboundMessage).values(status="sent"))
    async with db.write() as session:
        patient = await visits.find_patient(session, "BJ01-001")
        change = await visits.move_visit(session, protocol, patient, "W4", date(2026, 4, 1),
                                         reason="clinic closed", now=utc(2026, 3, 27, 3),
                                         actor=STAFF)
    assert change.cancelled_notices == 0
    assert [m.status for m in await support.visit_messages(db)] == ["sent"]


async def test_move_rules(db: Database, protocol: Protocol) -> None:
    patient_id = await _setup(db, protocol)
    now = utc(2026, 3, 20)
    async with db.write() as session:
        patient = await visits.find_patient(session, "BJ01-001")
        with pytest.raises(VisitError, match="reason is required"):
            await visits.move_visit(session, protocol, patient, "W4", date(2026, 4, 1),
                                    reason="  ", now=now, actor=STAFF)
        with pytest.raises(VisitError, match="has no visit W5"):
            await visits.move_visit(session, protocol, patient, "W5", date(2026, 4, 1),
                                    reason="x", now=now, actor=STAFF)
        with pytest.raises(VisitError, match="already scheduled on 2026-03-30"):
            await visits.move_visit(session, protocol, patient, "W4", date(2026, 3, 30),
                                    reason="x", now=now, actor=STAFF)
        outside = await visits.move_visit(session, protocol, patient, "W4", date(2026, 4, 6),
                                          reason="patient in hospital", now=now, actor=STAFF)
        assert outside.out_of_window
        back = await visits.move_visit(session, protocol, patient, "W4", date(2026, 4, 2),
                                       reason="earlier slot", now=now, actor=STAFF)
        assert not back.out_of_window
        w4 = await support.visit(session, patient_id, "W4")
        assert (w4.revision, w4.out_of_window) == (2, False)
    with pytest.raises(VisitError, match="not a date"):
        visits.parse_date("2026-13-01")


async def test_done_records_the_real_date(db: Database, protocol: Protocol) -> None:
    patient_id = await _setup(db, protocol)
    async with db.write() as session:
        patient = await visits.find_patient(session, "BJ01-001")
        # 17:00 UTC on 03-29 is already 03-30 in Beijing: "today" is the patient's date.
        done = await visits.mark_done(session, protocol, patient, "W4", done_date=None,
                                      now=utc(2026, 3, 29, 17), actor=STAFF)
        assert (done.new_date, done.out_of_window) == (date(2026, 3, 30), False)
        with pytest.raises(VisitError, match="already done"):
            await visits.mark_done(session, protocol, patient, "W4", done_date=None,
                                   now=utc(2026, 3, 30, 2), actor=STAFF)
        with pytest.raises(VisitError, match="still in the future"):
            await visits.mark_done(session, protocol, patient, "W8", done_date=date(2026, 4, 28),
                                   now=utc(2026, 4, 27, 2), actor=STAFF)
        with pytest.raises(VisitError, match="already done"):
            await visits.move_visit(session, protocol, patient, "W4", date(2026, 4, 1),
                                    reason="x", now=utc(2026, 3, 30, 2), actor=STAFF)
        w4 = await support.visit(session, patient_id, "W4")
        assert (w4.status, w4.done_date) == ("done", date(2026, 3, 30))


async def test_a_closed_window_opens_one_routine_alert(db: Database, protocol: Protocol) -> None:
    patient_id = await _setup(db, protocol)
    async with db.write() as session:  # W0 (03-02) took place; W4 window ends Thu 04-02
        patient = await visits.find_patient(session, "BJ01-001")
        await visits.mark_done(session, protocol, patient, "W0", done_date=date(2026, 3, 2),
                               now=utc(2026, 3, 2, 4), actor=STAFF)
    async with db.write() as session:  # 23:59 on 04-02 in Beijing: the window is still open
        assert await visits.detect_missed(session, protocol, utc(2026, 4, 2, 15, 59)) == 0
    for _ in range(2):  # 00:00 on 04-03 in Beijing; a second pass changes nothing
        async with db.write() as session:
            assert await visits.detect_missed(session, protocol, utc(2026, 4, 2, 16)) in (0, 1)
    async with db.read() as session:
        alerts = (await session.execute(select(Alert))).scalars().all()
        events = (await session.execute(select(AlertEvent))).scalars().all()
        w4 = await support.visit(session, patient_id, "W4")
        scr = await support.visit(session, patient_id, "SCR")
        pages = (await session.execute(select(OutboundMessage))).scalars().all()
    assert [(a.kind, a.tier, a.status, a.patient_id, a.site_id, a.pages, a.next_escalation_at)
            for a in alerts] == [("missed_visit", "routine", "open", patient_id, "BJ01", 0, None)]
    assert "W4" in alerts[0].summary
    assert "2026-04-02" in alerts[0].summary
    assert [(e.step, e.kind) for e in events] == [(0, "opened")]
    assert (w4.status, scr.status) == ("missed", "planned")  # screening preceded enrolment
    assert pages == []  # routine: the digest reports it, nobody is paged
    async with db.write() as session:  # the visit happened late after all: its real date
        patient = await visits.find_patient(session, "BJ01-001")
        late = await visits.mark_done(session, protocol, patient, "W4",
                                      done_date=date(2026, 4, 6), now=utc(2026, 4, 7, 2),
                                      actor=STAFF)
    assert (late.new_date, late.out_of_window) == (date(2026, 4, 6), True)
    async with db.read() as session:
        w4 = await support.visit(session, patient_id, "W4")
    assert (w4.status, w4.done_date, w4.out_of_window) == ("done", date(2026, 4, 6), True)


async def test_a_visit_moved_past_its_window_is_due_by_its_new_date(
        db: Database, protocol: Protocol) -> None:
    patient_id = await _setup(db, protocol)
    async with db.write() as session:
        patient = await visits.find_patient(session, "BJ01-001")
        await visits.mark_done(session, protocol, patient, "W0", done_date=None,
                               now=utc(2026, 3, 2, 4), actor=STAFF)
        await visits.move_visit(session, protocol, patient, "W4", date(2026, 4, 8),
                                reason="patient abroad", now=utc(2026, 3, 20), actor=STAFF)
    for now in (utc(2026, 4, 5), utc(2026, 4, 8, 15, 59)):  # window closed, new date not past
        async with db.write() as session:
            assert await visits.detect_missed(session, protocol, now) == 0
    async with db.write() as session:  # 00:00 on 04-09 in Beijing
        assert await visits.detect_missed(session, protocol, utc(2026, 4, 8, 16)) == 1
        w4 = await support.visit(session, patient_id, "W4")
        assert w4.status == "missed"


async def test_withdrawn_patients_have_no_missed_visits(db: Database,
                                                        protocol: Protocol) -> None:
    await _setup(db, protocol, status="withdrawn")
    async with db.write() as session:
        assert await visits.detect_missed(session, protocol, utc(2026, 6, 1)) == 0


@pytest.mark.parametrize("fields", [{"status": "paused"}, {"status": "withdrawn"},
                                    {"opted_out": True}])
async def test_no_notices_for_paused_withdrawn_or_opted_out(
        sqlite_db: Database, protocol: Protocol, fields: dict[str, object]) -> None:
    await _setup(sqlite_db, protocol, **fields)
    async with sqlite_db.write() as session:
        assert await visits.plan_notices(session, protocol, utc(2026, 3, 27, 2)) == 0
        patient = await visits.find_patient(session, "BJ01-001")
        await visits.mark_done(session, protocol, patient, "W24", done_date=None,
                               now=utc(2026, 8, 17, 7), actor=STAFF)
    assert not await support.visit_messages(sqlite_db)  # no phase notice either


async def test_notices_are_not_planned_early_late_or_in_quiet_hours(
        sqlite_db: Database, protocol: Protocol) -> None:
    await _setup(sqlite_db, protocol)
    for now in (utc(2026, 3, 27, 0, 59),  # 08:59 Beijing: too early
                utc(2026, 3, 27, 14),  # 22:00 Beijing: quiet hours, and the day's over
                utc(2026, 3, 28, 2)):  # 10:00 the next day: "in 3 days" would be wrong
        async with sqlite_db.write() as session:
            assert await visits.plan_notices(session, protocol, now) == 0
    async with sqlite_db.write() as session:  # an outage until 21:59 that day: still in time
        assert await visits.plan_notices(session, protocol, utc(2026, 3, 29, 13, 59)) == 1
    async with sqlite_db.write() as session:
        assert await visits.plan_notices(session, protocol, utc(2026, 3, 29, 13, 59)) == 0
    [row] = await support.visit_messages(sqlite_db)
    assert (row.dedupe_key.endswith(":r0:d1"), row.due_at) == (True, utc(2026, 3, 29, 1))


def test_the_first_visit_is_no_return_visit_and_the_site_says_when_and_where(
        protocol: Protocol) -> None:
    """Issue 16: W0 is not a 复诊; the site's time and place where the protocol gives them."""
    w0, w4 = protocol.visits.by_name("W0"), protocol.visits.by_name("W4")
    assert w0 is not None
    assert w4 is not None
    day = date(2026, 3, 4)
    assert visits.render_visit_notice(w0, day, 3, "zh").body.startswith(
        "提醒：3天后（3月4日周三）首次就诊。")
    assert visits.render_visit_notice(w0, day, 1, "en").body.startswith(
        "Reminder: your first clinic visit is tomorrow, Wed 4 Mar.")
    assert "复诊" in visits.render_visit_notice(w4, day, 3, "zh").body
    site = SiteText(sms_name=Localized(zh="协和随访", en="PUMCH"), visit_time="8:00",
                    visit_place=Localized(zh="门诊楼三层", en="Outpatient building, 3rd floor"))
    zh = visits.render_visit_notice(w4, day, 1, "zh", site=site)
    en = visits.render_visit_notice(w4, day, 1, "en", site=site)
    assert zh.body.startswith("提醒：明天（3月4日周三）复诊。请8:00到门诊楼三层。")
    assert en.body.startswith("Reminder: clinic visit tomorrow, Wed 4 Mar. Come at 8:00 to "
                              "Outpatient building, 3rd floor.")
    # Only the time, or only the place: neither is said (a half instruction misleads).
    half = site.model_copy(update={"visit_place": None})
    assert "8:00" not in visits.render_visit_notice(w4, day, 1, "zh", site=half).body
    assert zh.template_id == "visit.notice_tomorrow"
    assert zh.version != visits.render_visit_notice(w4, day, 1, "zh").version
    # Whole notices, every instruction and the hold included, fit their budget (engage
    # protocol check measures them so with each site's time, place and signature).
    assert visits.notice_problems(protocol) == []
    assert visits.notice_problems(holding_doses(protocol)) == []


def test_notice_texts_are_short_neutral_and_carry_the_instructions(protocol: Protocol) -> None:
    w12 = protocol.visits.by_name("W12")
    assert w12 is not None
    zh = visits.render_visit_notice(w12, date(2026, 5, 25), 3, "zh", hold=True)
    en = visits.render_visit_notice(w12, date(2026, 5, 25), 1, "en", hold=True)
    # Bring everything for the pill count: the capsules left and every box, empty ones too.
    assert zh.body == ("提醒：3天后（5月25日周一）复诊。请空腹前来。请带剩药和全部药盒（含空盒）。"
                       "当天别在家吃，抽血后再吃；不去就照常吃。")
    assert en.body == ("Reminder: clinic visit tomorrow, Mon 25 May. Please come fasting. "
                       "Bring all leftover capsules and every box, even empty ones. On the day, "
                       "bring your dose and take it after the blood test, not at home. Not "
                       "going? Take it as usual.")
    assert "别在家吃" not in visits.render_visit_notice(w12, date(2026, 5, 25), 3, "zh").body
    # Signed by the site as the dispatcher sends it, the longest date included: Chinese fits
    # one SMS segment; English with every instruction needs two.
    longest = date(2026, 12, 30)
    signed_zh = sms.sign(visits.render_visit_notice(w12, longest, 3, "zh", hold=True).body,
                         sms.sample_signature(protocol, "zh"))
    signed_en = sms.sign(visits.render_visit_notice(w12, longest, 3, "en", hold=True).body,
                         sms.sample_signature(protocol, "en"))
    assert sms.segments(signed_zh) == 1
    assert sms.segments(signed_en) == 2
    assert (zh.template_id, en.template_id) == ("visit.notice_in_days", "visit.notice_tomorrow")
    w8 = protocol.visits.by_name("W8")
    assert w8 is not None
    plain = visits.render_visit_notice(w8, date(2026, 5, 25), 3, "en", hold=True).body
    assert "fasting" not in plain
    assert "blood test" in plain
    forbidden = [w.lower() for w in protocol.sms.forbidden_words]
    for body in (zh.body, en.body, plain):
        assert not [w for w in forbidden if w in body.lower()]
    assert zh.version != visits.render_visit_notice(w8, date(2026, 5, 25), 3, "zh").version
    assert catalogue.message_ids("en")
    assert {
        i for i in catalogue.message_ids("en") if i.startswith(("visit.", "phase."))} == {
        i for i in catalogue.message_ids("zh") if i.startswith(("visit.", "phase."))}


async def test_visits_rows_are_indexed_for_planning(sqlite_db: Database) -> None:
    # The tick reads planned visits by date; without the index every tick scans every visit.
    async with sqlite_db.read() as session:
        plan = (await session.execute(text(
            "EXPLAIN QUERY PLAN SELECT id FROM visits WHERE status = 'planned' "
            "AND scheduled_date BETWEEN '2026-01-01' AND '2026-01-05'"))).all()
    assert "ix_visits_due" in str(plan)


UNBLINDING = ["placebo", "安慰剂", "switch", "切换", "换成", "换药", "active drug", "真药"]


async def test_phase_and_end_notices_follow_the_recorded_visits(db: Database,
                                                                 protocol: Protocol) -> None:
    """Issue 16: the week-24 notice goes when staff record W24 (not on day 168), the end
    notice when W48 is recorded done; once each, neutral, never 'stop your medicines'."""
    patient_id = await _setup(db, protocol)  # week 24 = Mon 2026-08-17; week 48 = 2027-02-01

    async def done(name: str, now: datetime) -> None:
        async with db.write() as session:
            patient = await visits.find_patient(session, "BJ01-001")
            await visits.mark_done(session, protocol, patient, name, done_date=None, now=now,
                                   actor=STAFF)

    await done("W20", utc(2026, 7, 20, 7))  # no phase starts at W20: nothing
    assert not await support.visit_messages(db)
    await done("W24", utc(2026, 8, 19, 7))  # recorded two days after day 168, at 15:00
    await done("W48", utc(2027, 2, 3, 6))
    async with db.write() as session:  # once each: recording again queues nothing more
        patient = await visits.find_patient(session, "BJ01-001")
        assert not await visits.queue_phase_notice(session, protocol, patient, "W48",
                                                   now=utc(2027, 2, 4))
    rows = await support.visit_messages(db)
    assert [(m.dedupe_key, m.template_id, m.due_at) for m in rows] == [
        (f"phase:{patient_id}:open_label", "phase.changed", utc(2026, 8, 19, 7)),
        (f"phase:{patient_id}:end", "phase.end", utc(2027, 2, 3, 6))]
    texts = [m.plain_text if m.plain_text is not None else m.body for m in rows]
    assert all(m.body.startswith(t) for m, t in zip(rows, texts, strict=True))
    assert texts[0] == ("从今天起，所有参与者都继续服用研究用药，每天一次，时间照旧。"
                            "有疑问请问研究团队。")
    assert texts[1] == ("感谢您的参与！每日提醒现已停止。之后怎样用药请听研究医生安排，"
                            "激素等药物请不要自行停用。")
    forbidden = [w.lower() for w in [*protocol.sms.forbidden_words, *UNBLINDING]]
    for message_id in ("phase.changed", "phase.end"):
        for language in ("zh", "en"):
            text = catalogue.render(message_id, language, dose_label=protocol.dose.label[
                "open_label"].get(language))
            assert not [w for w in forbidden if w in text.lower()], text
            assert sms.segments(sms.sign(text, sms.sample_signature(protocol, language))) == 1
    assert "stop any medicine on your own" in catalogue.render("phase.end", "en")


async def test_the_end_notice_goes_when_the_final_window_closes_unrecorded(
        sqlite_db: Database, protocol: Protocol) -> None:
    patient_id = await _setup(sqlite_db, protocol)  # W48 window ends 2027-02-08
    async with sqlite_db.write() as session:
        await visits.detect_missed(session, protocol, utc(2027, 2, 8, 2))
    assert not [m for m in await support.visit_messages(sqlite_db)
                if m.dedupe_key == f"phase:{patient_id}:end"]
    async with sqlite_db.write() as session:
        await visits.detect_missed(session, protocol, utc(2027, 2, 9, 2))
    ends = [m for m in await support.visit_messages(sqlite_db)
            if m.dedupe_key == f"phase:{patient_id}:end"]
    assert [(m.template_id, m.due_at) for m in ends] == [("phase.end", utc(2027, 2, 9, 2))]

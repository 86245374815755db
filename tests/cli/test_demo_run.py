"""`engage demo` end to end: the command runs, then its database and output are checked."""

from __future__ import annotations

import asyncio
import contextlib
import io
import re
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from engage.cli import main
from messages import catalogue
from storage.db import Database
from storage.models import (
    Alert,
    AlertEvent,
    AuditEntry,
    DoseRecord,
    InboundMessage,
    OutboundMessage,
    Patient,
    Staff,
    SymptomReport,
)

# A hang guard, not a time limit: the whole demo runs in the module fixture (about 16 s idle).
pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One short demo run for every check in this module (it takes several seconds)."""
    folder = tmp_path_factory.mktemp("demo")
    path = folder / "demo.db"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = main(["demo", "--db", str(path), "--days", "5", "--fast",
                       "--first-day", "2025-03-10"])
    assert status == 0, out.getvalue()[-3000:]
    return path, out.getvalue()


def query(path: Path, statement: Any) -> list[tuple[Any, ...]]:
    async def run() -> list[tuple[Any, ...]]:
        db = Database(f"sqlite+aiosqlite:///{path}")
        try:
            async with db.read() as session:
                return [tuple(row) for row in (await session.execute(statement)).all()]
        finally:
            await db.dispose()

    return asyncio.run(run())


def test_doses_are_confirmed_by_patients_in_both_languages(demo: tuple[Path, str]) -> None:
    path, _ = demo
    rows = dict(query(path, select(Patient.language, func.count()).join(
        DoseRecord, DoseRecord.patient_id == Patient.id)
        .where(DoseRecord.state.in_(("taken", "late"))).group_by(Patient.language)))
    assert rows.get("zh", 0) > 10
    assert rows.get("en", 0) > 10
    channels = dict(query(path, select(InboundMessage.channel, func.count())
                          .where(InboundMessage.outcome == "dose_taken")
                          .group_by(InboundMessage.channel)))
    assert channels.get("telegram", 0) > 0
    assert channels.get("sms", 0) > 0


def test_a_fever_is_escalated_up_the_chain_then_acknowledged_by_the_coordinator(
        demo: tuple[Path, str]) -> None:
    path, _ = demo
    alerts = query(path, select(Alert.id, Alert.status, Staff.role, Alert.summary).join(
        Staff, Staff.id == Alert.acknowledged_by).where(Alert.kind == "symptom",
                                                         Alert.tier == "same_day"))
    assert len(alerts) == 2  # the fever and the hospital admission
    escalated = []
    for alert_id, status, role, _ in alerts:
        assert status == "resolved"
        assert role == "coordinator"
        events = query(path, select(AlertEvent.kind, AlertEvent.level).where(
            AlertEvent.alert_id == alert_id).order_by(AlertEvent.step))
        # The SAE clock runs on after the alert is resolved, until the sponsor report is
        # recorded (issue 17).
        kinds = [kind for kind, _ in events if not kind.startswith("sae_")]
        assert kinds[0] == "opened"
        assert "acknowledged" in kinds
        assert kinds[-1] == "resolved"
        paged_levels = [level for kind, level in events if kind == "paged"]
        assert paged_levels[0] == 0
        if len(paged_levels) > 1:
            assert paged_levels[1] == 1  # the next step, after the coordinator's timeout
            assert kinds.index("acknowledged") > len(paged_levels)
            escalated.append(alert_id)
    assert len(escalated) == 1
    pages = query(path, select(func.count()).select_from(OutboundMessage).where(
        OutboundMessage.alert_id == escalated[0], OutboundMessage.lane == "safety",
        OutboundMessage.status == "delivered"))
    assert pages[0][0] == 3  # cumulative: the coordinator, then the coordinator and investigator


def test_one_patient_is_on_wechat_and_one_staff_member_on_wecom(demo: tuple[Path, str]) -> None:
    """Issue 20: SH-001 links by scanning the QR code of their link code, gets the reminders by
    WeChat (template messages: the sandbox registered as "wechat") and answers with the menu's
    服药已完成; the SH coordinator is paged on WeCom and acknowledges with the card's button."""
    from storage.models import ContactPoint

    path, output = demo
    points = query(path, select(ContactPoint.channel, ContactPoint.owner_kind,
                                ContactPoint.address, ContactPoint.reachable)
                   .order_by(ContactPoint.channel))
    assert points == [("wechat", "patient", "oDemo_SH-001", True),
                      ("wecom", "staff", "WangFang", True)]
    reminders = query(path, select(OutboundMessage.channel, func.count()).join(
        Patient, Patient.id == OutboundMessage.patient_id).where(
        Patient.subject_id == "SH-001", OutboundMessage.template_id == "dose.reminder",
        OutboundMessage.status == "delivered").group_by(OutboundMessage.channel))
    assert [channel for channel, _ in reminders] == ["wechat"]
    assert reminders[0][1] >= 4
    taken = query(path, select(InboundMessage.outcome, func.count()).where(
        InboundMessage.channel == "wechat").group_by(InboundMessage.outcome))
    assert dict(taken).get("dose_taken", 0) >= 4
    assert dict(taken).get("link_linked") == 1
    pages = query(path, select(OutboundMessage.channel).join(
        Staff, Staff.id == OutboundMessage.staff_id).where(
        Staff.name == "Wang Fang", OutboundMessage.template_id == "alert.page"))
    assert pages
    assert {channel for (channel,) in pages} == {"wecom"}
    acks = query(path, select(func.count()).select_from(AlertEvent).join(
        Staff, Staff.id == AlertEvent.staff_id).where(
        AlertEvent.kind == "acknowledged", Staff.name == "Wang Fang"))
    assert acks[0][0] >= 1
    assert query(path, select(func.count()).select_from(InboundMessage).where(
        InboundMessage.channel == "wecom"))[0][0] >= 2  # the button, the /resolve typed
    assert "▶ WeChat        scanned the clinic's QR code" in output
    assert "▶ WeChat        pressed the menu's [服药已完成]" in output
    assert "(template message)" in output
    assert "◀ WeCom zh      紧急" in output
    assert "▶ WeCom         pressed [确认]" in output
    assert "on WeCom (digest:SH:" in output


def test_a_patient_who_sent_stop_is_opted_out_not_withdrawn(demo: tuple[Path, str]) -> None:
    path, _ = demo
    rows = query(path, select(Patient.subject_id, Patient.status).where(
        Patient.opted_out.is_(True)))
    assert rows == [("SH-003", "active")]
    assert query(path, select(Alert.kind).join(Patient, Patient.id == Alert.patient_id)
                 .where(Patient.subject_id == "SH-003")) == [("opt_out",)]


def test_the_digest_went_out_with_its_chart(demo: tuple[Path, str]) -> None:
    path, output = demo
    charts = query(path, select(func.count()).select_from(OutboundMessage).where(
        OutboundMessage.dedupe_key.like("digest:%:chart"), OutboundMessage.image.is_not(None),
        OutboundMessage.status == "delivered"))
    assert charts[0][0] >= 6 * 5  # every staff member of both sites, every morning
    match = re.search(r"digest chart \(PNG\): (\S+\.png)", output)
    assert match, output[-2000:]
    png = Path(match.group(1))
    assert png.read_bytes().startswith(b"\x89PNG")


def test_the_output_shows_the_whole_story(demo: tuple[Path, str]) -> None:
    path, output = demo
    for language in ("zh", "en"):
        assert catalogue.render("dose.taken_ack", language) in output
        assert catalogue.render("report.reply_same_day", language) in output
    assert "pressed [" in output  # Telegram buttons
    assert "◀ SMS" in output
    assert "◀ Telegram" in output
    assert catalogue.render("chat.stopped", "zh") in output
    assert "Adherence (the table `engage report adherence` prints)" in output
    assert re.search(r"ALL\s+SH\s+\d+", output)
    assert "Alert log" in output
    assert "acknowledged by SH-coordinator" in output
    assert "paged (level 1)" in output
    assert "Daily digest of site SH" in output
    assert f"database is kept for inspection: {path.resolve()}" in output
    assert "engage report adherence --at" in output


def test_every_audit_row_has_a_reason_and_message_caused_changes_name_the_message(
        demo: tuple[Path, str]) -> None:
    """Issue 17, acceptance 5 (ALCOA+): no row without a reason; every change a person's message
    caused carries that message's id; no report is reviewed unless a staff member said so."""
    path, _ = demo
    assert query(path, select(func.count()).select_from(AuditEntry).where(
        (AuditEntry.reason.is_(None)) | (AuditEntry.reason == ""))) == [(0,)]
    by_people = query(path, select(AuditEntry.actor_kind, func.count(),
                                   func.count(AuditEntry.inbound_id)).where(
        AuditEntry.actor_kind.in_(("patient", "staff", "telegram")))
        .group_by(AuditEntry.actor_kind))
    assert {kind for kind, _, _ in by_people} >= {"patient", "staff"}
    assert all(total == named for _, total, named in by_people), by_people
    inbound = {row[0] for row in query(path, select(InboundMessage.id))}
    named = {row[0] for row in query(path, select(AuditEntry.inbound_id).where(
        AuditEntry.inbound_id.is_not(None)))}
    assert named <= inbound
    assert query(path, select(func.count()).select_from(SymptomReport).where(
        SymptomReport.reviewed_at.is_not(None))) == [(0,)]
    assert query(path, select(func.count()).select_from(AuditEntry).where(
        AuditEntry.new_value.like("%reviewed%"))) == [(0,)]
    # The SAE candidate (the hospital admission) was reported to the sponsor by a button.
    reported = query(path, select(Alert.id, Alert.sae_reported_by).where(
        Alert.sae_deadline_at.is_not(None)))
    assert reported
    assert all(by is not None for _, by in reported)


def test_no_export_of_the_demo_contains_a_phone_number_or_a_chat_id(
        demo: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Exports go to data management: every phone and chat id the demo stored (patients, staff,
    sites, senders, message addresses) is absent from every export kind."""
    from engage.commands.export import EXPORTS
    from storage.models import Site

    path, _ = demo
    identifiers: set[str] = set()
    for statement in (select(Patient.phone, Patient.telegram_id), select(Staff.phone,
                      Staff.telegram_id), select(Site.phone), select(InboundMessage.sender),
                      select(OutboundMessage.address)):
        for row in query(path, statement):
            identifiers |= {str(v).removeprefix("telegram:") for v in row if v}
    identifiers = {i for i in identifiers if sum(c.isdigit() for c in i) >= 5}
    assert any(i.startswith("+") for i in identifiers)  # phones are there to be found
    assert any(i.isdigit() for i in identifiers)  # and chat ids
    monkeypatch.setenv("ENGAGE_DATABASE_URL", f"sqlite+aiosqlite:///{path}")
    for kind in sorted(EXPORTS):
        out = tmp_path / f"{kind}.csv"
        assert main(["export", kind, "--out", str(out)]) == 0
        text = out.read_text(encoding="utf-8-sig")
        found = sorted(i for i in identifiers
                       if i in text or i.lstrip("+") in text.replace("+", ""))
        assert found == [], f"{kind}: {found}"

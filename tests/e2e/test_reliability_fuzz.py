"""Hypothesis through the whole inbound path on a real SQLite file: the conversation core never
fails on any Unicode text or button data from anyone, and dose confirmations delivered twice,
concurrently, out of order and across restarts keep the dose records and their audit trail
consistent.

Already covered elsewhere (not repeated here): the keyword parser
(tests/messages/test_messages_keywords.py), the temperature parser
(tests/trial/test_temperature_parse.py) and triage (tests/trial/test_triage_table.py) never
raising on any text; the pure dose state machine under random answers
(tests/trial/test_dose_machine.py::DoseLife). What is new here is the database,
the duplicates and the restarts.
"""

from __future__ import annotations

import asyncio
import itertools
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)
from sqlalchemy import func, select

from bot.conversation import Conversation, InboundEvent
from engage.clock import SimulatedClock
from scheduler.tick import run_tick
from storage.db import Database
from storage.models import AuditEntry, DoseRecord, InboundMessage, OutboundMessage, Patient
from study.dose_answers import EARLY_ANSWER
from tests.factories import add_site, add_staff, enrol
from trial.dose import DoseState
from trial.protocol import Protocol, load_protocol

START = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)  # 08:00 in Shanghai, the dose time
PHONE = "+8613800000001"
PATIENT_CHAT = 555
STAFF_CHAT = 9001
PROTOCOL = load_protocol()


async def _seed(path: Path, protocol: Protocol) -> None:
    db = Database(f"sqlite+aiosqlite:///{path}")
    try:
        await add_site(db, START)
        await add_staff(db, START, telegram_id=STAFF_CHAT)
        enrolled = await enrol(db, protocol, START, phone=PHONE, language="zh")
        core = Conversation(db, protocol, SimulatedClock(START))
        linked = await core.handle(InboundEvent("telegram", "1", str(PATIENT_CHAT),
                                                f"/start {enrolled.code}", None, START,
                                                {"chat_id": PATIENT_CHAT}))
        assert linked.outcome == "link_linked"
        await run_tick(db, protocol, START)  # today's dose, reminded
    finally:
        await db.dispose()


@pytest.fixture(scope="module")
def seeded(sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A site, a staff member and a patient on SMS and Telegram with today's dose reminded."""
    path = tmp_path_factory.mktemp("fuzz") / "seeded.db"
    shutil.copy(sqlite_template, path)
    asyncio.run(_seed(path, PROTOCOL))
    return path


def _copy(seeded: Path) -> str:
    target = seeded.parent / f"run-{next(_runs)}.db"
    shutil.copy(seeded, target)
    return f"sqlite+aiosqlite:///{target}"


_runs = itertools.count()

# --- any input from anyone -------------------------------------------------------------------

SENDERS = st.sampled_from([("sms", PHONE), ("sms", "+447700900123"),
                           ("telegram", str(PATIENT_CHAT)), ("telegram", str(STAFF_CHAT)),
                           ("telegram", "777")])
ACTIONS = st.one_of(st.none(), st.text(max_size=70), st.sampled_from([
    "dose:taken:1", "dose:skip:999999", "q:1:yes", "q::", "alert:ack:1", "alert:resolve:x",
    "report:start", "lang:xx", "page:adherence BJ01:-1", "alert:ack:99999999999999"]))
TEXTS = st.one_of(st.text(max_size=300), st.sampled_from([
    "/start", "/start ", "/resolve", "/ack", "/ack -1", "/alerts@other_bot x", "LANG",
    "语言 火星文", "REPORT", "症状", "/report", "TAKEN TAKEN", "38,5", "三十八度五", "101.3F",
    "\u200b", "\x00", "🙂" * 50, "/" * 10]))


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(messages=st.lists(st.tuples(SENDERS, TEXTS, ACTIONS), min_size=1, max_size=4))
def test_no_input_from_anyone_makes_the_conversation_fail(
        seeded: Path, messages: list[tuple[tuple[str, str], str, str | None]]) -> None:
    async def run() -> list[str]:
        db = Database(_copy(seeded))
        clock = SimulatedClock(START + timedelta(minutes=5))
        try:
            core = Conversation(db, PROTOCOL, clock)
            outcomes = []
            for n, ((channel, sender), text, action) in enumerate(messages):
                handled = await core.handle(InboundEvent(
                    channel, f"fuzz-{n}", sender, text,
                    action if channel == "telegram" else None, clock.now(),
                    {"chat_id": int(sender)} if channel == "telegram" else {}))
                outcomes.append(handled.outcome)
                clock.advance(timedelta(seconds=30))
            async with db.read() as session:
                unhandled = (await session.execute(select(func.count()).select_from(
                    InboundMessage).where(InboundMessage.handled_at.is_(None)))).scalar_one()
            assert unhandled == 0
            return outcomes
        finally:
            await db.dispose()

    outcomes = asyncio.run(run())
    assert "error" not in outcomes, list(zip(messages, outcomes, strict=True))


# --- dose confirmations: duplicates, reordering, restarts ------------------------------------

WORDS = st.sampled_from(["TAKEN", "SKIP", "SNOOZE", "MISSED", "1", "2", "3", "已服", "漏服",
                         "taken ", "Taken!"])
OPEN_STATES = {s.value for s in DoseState if s.is_open}


class DoseConfirmations(RuleBasedStateMachine):
    """One patient answering by SMS and buttons while the clock, the tick and restarts go on."""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.db: Database | None = None
        self.core: Conversation | None = None
        self.clock = SimulatedClock(START + timedelta(minutes=1))
        self.delivered: list[InboundEvent] = []
        self.ids = itertools.count(1)
        self.history: dict[int, list[str]] = {}
        self.late: dict[int, tuple[str | None, datetime | None]] = {}

    def _run(self, coro):  # type: ignore[no-untyped-def]
        return self.loop.run_until_complete(coro)

    @initialize()
    def start(self) -> None:
        self.url = _copy(SEEDED[0])
        self._open()

    def _open(self) -> None:
        self.db = Database(self.url)
        self.core = Conversation(self.db, PROTOCOL, self.clock)

    def _event(self, text: str, action: str | None = None) -> InboundEvent:
        n = next(self.ids)
        if action is not None:
            return InboundEvent("telegram", f"u{n}", str(PATIENT_CHAT), "", action,
                                self.clock.now(), {"chat_id": PATIENT_CHAT})
        return InboundEvent("sms", f"SM{n:032d}", PHONE, text, None, self.clock.now(), {})

    async def _deliver(self, events: list[InboundEvent]) -> None:
        assert self.core is not None
        results = await asyncio.gather(*(self.core.handle(e) for e in events))
        assert "error" not in [r.outcome for r in results]

    @rule(word=WORDS, copies=st.integers(1, 3))
    def sms_answer_delivered_more_than_once_at_once(self, word: str, copies: int) -> None:
        event = self._event(word)
        self.delivered.append(event)
        self._run(self._deliver([event] * copies))

    @rule(first=WORDS, second=WORDS)
    def two_answers_racing(self, first: str, second: str) -> None:
        events = [self._event(first), self._event(second)]
        self.delivered += events
        self._run(self._deliver(events[::-1]))  # the later one may well be handled first

    @rule(answer=st.sampled_from(["taken", "skip", "snooze"]), which=st.integers(0, 3))
    def button_pressed(self, answer: str, which: int) -> None:
        async def press() -> None:
            assert self.db is not None
            async with self.db.read() as session:
                ids = list((await session.execute(select(DoseRecord.id).order_by(
                    DoseRecord.id.desc()))).scalars())
            dose_id = ids[min(which, len(ids) - 1)] if ids else 1  # an old reminder's too
            event = self._event("", f"dose:{answer}:{dose_id}")
            self.delivered.append(event)
            await self._deliver([event])

        self._run(press())

    @precondition(lambda self: bool(self.delivered))
    @rule(data=st.data())
    def an_old_message_delivered_again(self, data: st.DataObject) -> None:
        event = data.draw(st.sampled_from(self.delivered))
        self._run(self._deliver([event]))

    @rule(minutes=st.sampled_from([1, 10, 31, 61, 180, 720, 1440]))
    def time_passes_and_the_scheduler_ticks(self, minutes: int) -> None:
        assert self.db is not None
        self.clock.advance(timedelta(minutes=minutes))
        self._run(run_tick(self.db, PROTOCOL, self.clock.now()))

    @rule()
    def restart(self) -> None:
        assert self.db is not None
        self._run(self.db.dispose())
        self._open()

    @invariant()
    def records_and_trail_agree(self) -> None:
        if self.db is None:
            return
        self._run(self._check())

    async def _check(self) -> None:
        assert self.db is not None
        async with self.db.read() as session:
            doses = list((await session.execute(select(DoseRecord))).scalars())
            trail = (await session.execute(select(AuditEntry.entity_id, AuditEntry.new_value)
                                           .where(AuditEntry.entity == "doses",
                                                  AuditEntry.field == "state")
                                           .order_by(AuditEntry.id))).all()
            inbound = (await session.execute(select(
                InboundMessage.id, InboundMessage.handled_at, InboundMessage.outcome))).all()
            replies = dict((await session.execute(select(
                OutboundMessage.dedupe_key, OutboundMessage.id).where(
                OutboundMessage.dedupe_key.like("reply:%")))).all())
            patient = (await session.execute(select(Patient))).scalar_one()
        # Each message stored once, handled once, answered once.
        assert len(inbound) == len({e.external_id for e in self.delivered}) + 1  # + the link
        assert all(h is not None and o != "error" for _, h, o in inbound)
        answered = {key.split(":")[1] for key in replies}
        assert len(replies) == len(answered)  # never two replies to one message
        assert answered == {str(i) for i, _, _ in inbound}
        last_state = {str(row[0]): row[1] for row in trail}
        for dose in doses:
            state = DoseState(dose.state)
            # The audit trail, replayed, gives the record's state.
            assert last_state.get(str(dose.id), "scheduled") == dose.state, dose.id
            seen = self.history.setdefault(dose.id, [])
            if not seen or seen[-1] != dose.state:
                seen.append(dose.state)
            closed = [s for s in seen if s not in OPEN_STATES]
            # Never reopened; once closed, only missed -> late (taken after all).
            assert all(s not in OPEN_STATES for s in seen[seen.index(closed[0]):]) \
                if closed else True
            assert len(set(closed)) <= 1 or closed == ["missed", "late"], seen
            assert 0 <= dose.snoozes <= PROTOCOL.reminders.max_snoozes
            if state.is_answered:
                assert dose.answered_at is not None
                assert dose.answered_at < dose.cutoff_at
                # Not even a stale or forged button records a dose long before it is due.
                assert dose.answered_at >= dose.due_at - EARLY_ANSWER, (dose.id, seen)
            if dose.late_answer is not None:
                assert dose.late_answer_at is not None
                assert dose.late_answer_at >= dose.cutoff_at
                before = self.late.setdefault(dose.id, (dose.late_answer, dose.late_answer_at))
                assert before == (dose.late_answer, dose.late_answer_at)  # never replaced
        assert patient.opted_out is False

    def teardown(self) -> None:
        if self.db is not None:
            self._run(self.db.dispose())
        self.loop.close()


SEEDED: list[Path] = []


@pytest.fixture
def seeded_for_machine(seeded: Path) -> None:
    SEEDED[:] = [seeded]


DoseConfirmations.TestCase.settings = settings(
    max_examples=12, stateful_step_count=20, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.usefixtures("seeded_for_machine")
class TestDoseConfirmations(DoseConfirmations.TestCase):  # type: ignore[valid-type,misc]
    """The state machine, with the seeded database file."""

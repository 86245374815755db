"""The demo's running system: the same parts `engage run` wires (conversation core, dispatcher,
scheduler runner), on a fresh SQLite file, a simulated clock and sandbox adapters registered
under the names "telegram", "sms", "wechat" and "wecom", plus the sandbox's input side (what a
person sends, as each channel's adapter hands it to the conversation core)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import select

from bot.channels.sandbox import SandboxChannel
from bot.channels.twilio.inbound import sms_event
from bot.conversation import Conversation, Handled, InboundEvent
from engage.clock import SimulatedClock
from engage.demo.scenario import SMS, TELEGRAM, WECHAT, WECOM, Person, Scenario
from messages.channel import OutgoingMessage
from scheduler.dispatcher import OutboxSender
from scheduler.ratelimit import ChannelRate
from scheduler.runner import Runner
from storage import audit, outbox
from storage.audit import Actor
from storage.db import Database
from storage.migrate import upgrade
from storage.models import OutboundMessage
from study import contacts, enrolment, visits
from trial.enrolment import check_enrolment
from trial.protocol import Protocol

SETUP = Actor.cli("demo")
# The sandbox has no provider behind it to protect, and the clock stands still while a batch
# is sent: the providers' rate limits would only make the demo wait in real time.
CHANNELS = (TELEGRAM, SMS, WECHAT, WECOM)
SANDBOX_RATES = {name: ChannelRate(0.0, 0.0) for name in CHANNELS}


class DemoError(Exception):
    """The demo could not go on (a tick failed, a message could not be handled)."""


@dataclass(frozen=True)
class Delivered:
    """A message the sandbox delivered, with what the outbox row says about it."""

    channel: str
    message: OutgoingMessage
    person: Person | None
    template_id: str
    language: str
    lane: str
    dose_id: int | None
    alert_id: int | None
    at: datetime


def sqlite_url(path: Path) -> str:
    """The SQLAlchemy URL of a SQLite file."""
    return f"sqlite+aiosqlite:///{path.resolve()}"


def fresh_file(path: Path) -> Path:
    """Remove a previous demo database (and its WAL files) so each run starts clean; returns
    the file's absolute path."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.resolve()


class World:
    """A demo study, running."""

    def __init__(self, db: Database, protocol: Protocol, clock: SimulatedClock,
                 scenario: Scenario, path: Path) -> None:
        self.path = path
        self.db = db
        self.protocol = protocol
        self.clock = clock
        self.scenario = scenario
        self._sent: list[tuple[str, OutgoingMessage]] = []
        self.channels = {name: SandboxChannel(name, on_send=self._on_send)
                         for name in CHANNELS}
        self.dispatcher = OutboxSender(db, protocol, self.channels, clock, worker_id="demo",
                                     rates=SANDBOX_RATES)
        self.conversation = Conversation(db, protocol, clock, wake=self.dispatcher.wake)
        self.runner = Runner(db, protocol, self.dispatcher, clock)
        self._by_address = {(p.channel, p.address): p for p in scenario.people}
        self._update_ids = itertools.count(1)
        self._sms_ids = itertools.count(1)
        self._tencent_ids = itertools.count(6_000_000_000_000_000_001)
        self.errors: list[str] = []

    @classmethod
    async def create(cls, path: Path, protocol: Protocol, clock: SimulatedClock,
                     scenario: Scenario) -> World:
        """A fresh database file at `path`, migrated, with nobody in it yet."""
        path = fresh_file(path)
        db = Database(sqlite_url(path))
        await upgrade(db.engine)
        return cls(db, protocol, clock, scenario, path)

    async def close(self) -> None:
        await self.db.dispose()

    def person(self, channel: str, address: str) -> Person | None:
        """Who a sandbox address belongs to."""
        return self._by_address.get((channel, address))

    # -- setting the study up, as the admin commands would ---------------------------------
    async def set_up(self) -> None:
        """Sites, staff, patients (with their week-0 visit recorded), all audited."""
        now = self.clock.now()
        scenario = self.scenario
        with audit.cause(reason="demo set-up, as the admin commands would"):
            await self._set_up(now, scenario)

    async def _set_up(self, now: datetime, scenario: Scenario) -> None:
        async with self.db.write() as session:
            for site in scenario.sites:
                await enrolment.add_site(session, site_id=site.id, name=site.name, tz=site.tz,
                                         phone=site.phone, now=now, actor=SETUP)
            for member in scenario.staff:
                row = await enrolment.add_staff(
                    session, site_id=member.site, role=member.role, name=member.name,
                    telegram_id=int(member.address) if member.channel == TELEGRAM else None,
                    phone=None, language=member.language, now=now, actor=SETUP)
                member.record_id = row.id
                if member.channel == WECOM:  # as `engage staff add --wecom-userid` does
                    await contacts.bind(session, row, channel=WECOM, address=member.address,
                                        now=now, actor=SETUP, reason="demo set-up")
            for person in scenario.patients:
                request, problems = check_enrolment(
                    subject=person.key, site=person.site,
                    baseline_date=scenario.baseline(person).isoformat(),
                    dose_at=person.dose_time, lang=person.language,
                    phone_number=person.address if person.channel == SMS else None)
                if request is None:
                    raise DemoError(f"{person.key}: {'; '.join(map(str, problems))}")
                patient, code = await enrolment.enroll(session, self.protocol, request,
                                                       now=now, actor=SETUP)
                person.record_id, person.link_code = patient.id, code
                # Week 0 is the enrolment visit itself: recorded as done, as the site would.
                await visits.mark_done(session, self.protocol, patient, "W0",
                                       done_date=patient.baseline, now=now, actor=SETUP)

    # -- the sandbox's input side ------------------------------------------------------------
    def inbound(self, person: Person, text: str = "", action: str | None = None
                ) -> InboundEvent:
        """What the person's channel adapter would hand the conversation core."""
        now = self.clock.now()
        if person.channel in (WECHAT, WECOM):
            # As bot.channels.wechat.inbound and bot.channels.wecom.callback make them: a text
            # by MsgId; a menu click, a QR scan or a card button as its action.
            msg_id = str(next(self._tencent_ids))
            kind = "event" if action else "text"
            return InboundEvent(person.channel, msg_id, person.address, "" if action else text,
                                action, now, {"msg_type": kind, "create_time": str(int(
                                    now.timestamp()))})
        if person.channel == TELEGRAM:
            return InboundEvent(TELEGRAM, str(next(self._update_ids)), person.address, text,
                                action, now, {"chat_id": int(person.address),
                                              "language_code": person.language})
        return sms_event({"MessageSid": f"SMdemo{next(self._sms_ids):026d}",
                          "From": person.address, "Body": text}, now)

    async def send(self, person: Person, text: str = "", action: str | None = None
                   ) -> tuple[Handled, list[Delivered]]:
        """A person sends something; the replies are dispatched at once."""
        handled = await self.conversation.handle(self.inbound(person, text, action))
        if handled.outcome == "error":
            self.errors.append(f"{person.key}: {text or action!r} could not be handled")
        return handled, await self.dispatch()

    async def tick(self) -> list[Delivered]:
        """One scheduler pass as of the clock, then send whatever is due."""
        report = await self.runner.tick_now()
        if report is None:
            raise DemoError(f"the scheduler tick failed: {self.runner.last_tick_error}")
        return await self.dispatch()

    async def dispatch(self) -> list[Delivered]:
        """Send everything due now through the sandbox channels."""
        await self.dispatcher.run_once()
        return await self._collect()

    # -- the sandbox's output side -----------------------------------------------------------
    def _on_send(self, channel: str, message: OutgoingMessage) -> None:
        self._sent.append((channel, message))

    async def _collect(self) -> list[Delivered]:
        sent, self._sent = self._sent, []
        if not sent:
            return []
        async with self.db.read() as session:
            rows = {row.id: row for row in (await session.execute(select(OutboundMessage).where(
                OutboundMessage.id.in_([m.message_id for _, m in sent])))).scalars()}
        delivered = []
        for channel, message in sent:
            row = rows[message.message_id]
            delivered.append(Delivered(
                channel=channel, message=message, person=self.person(channel, message.address),
                template_id=row.template_id, language=row.language, lane=row.lane,
                dose_id=row.dose_id, alert_id=row.alert_id, at=self.clock.now()))
        return delivered

    @staticmethod
    def is_safety(item: Delivered) -> bool:
        return item.lane == outbox.SAFETY

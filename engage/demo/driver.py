"""Two compressed weeks, event to event: the simulated clock jumps to the next instant anything
is due (a dose time, a follow-up, a cut-off, an escalation timeout, a digest or notice time, a
simulated person's answer), the real scheduler tick runs as of that instant, the dispatcher sends
what is due through the sandbox, and the people who received something plan their answers."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time as wall
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sqlalchemy import func, select

from engage.clock import SimulatedClock
from engage.demo.people import Act, People
from engage.demo.scenario import MAX_PATIENTS, SITES, Scenario, build
from engage.demo.summary import last_digest, print_adherence, print_alerts, write_chart
from engage.demo.transcript import CHANNEL, Transcript
from engage.demo.world import Delivered, World, sqlite_url
from storage.models import Alert, ConversationState, DoseRecord, OutboundMessage, Patient, Visit
from trial.protocol import Protocol

START_TIME = time(7, 30)  # the first simulated morning, in the first site's time zone
WRAP_UP = timedelta(minutes=10)  # after the last morning's digests


def start_instant(scenario: Scenario) -> datetime:
    """When the simulated clock starts: the first morning at the first site."""
    return datetime.combine(scenario.first_day, START_TIME, ZoneInfo(scenario.sites[0].tz))


def end_instant(scenario: Scenario, protocol: Protocol) -> datetime:
    """When it stops: just after every site's digest on the morning after the last day, so the
    last digest covers the whole run."""
    morning = scenario.first_day + timedelta(days=scenario.days)
    return max(datetime.combine(morning, protocol.digest.time, ZoneInfo(site.tz))
               for site in scenario.sites) + WRAP_UP


def daily_instants(scenario: Scenario, protocol: Protocol) -> list[datetime]:
    """The protocol's wall-clock times (digest, visit notices, check-ins, end of quiet hours,
    midnight) in every time zone of the study, on every simulated day."""
    zones = {site.tz for site in scenario.sites} | {p.tz for p in scenario.patients}
    times = {protocol.digest.time, protocol.visits.notice_time, protocol.reminders.checkin_time,
             protocol.quiet_hours.end, time(0, 0)}
    instants = set()
    for offset in range(-1, scenario.days + 2):
        day = scenario.first_day + timedelta(days=offset)
        for zone in zones:
            for moment in times:
                instants.add(datetime.combine(day, moment, ZoneInfo(zone)))
    return sorted(instants)


async def next_due(world: World, after: datetime) -> datetime | None:
    """The next instant the database says something is due (planning, a dose step, an
    escalation, a held message, a questionnaire timeout)."""
    columns = [
        select(func.min(Patient.plan_next_at)).where(Patient.plan_next_at > after),
        select(func.min(DoseRecord.next_action_at)).where(DoseRecord.next_action_at > after),
        select(func.min(Alert.next_escalation_at)).where(Alert.status == "open",
                                                          Alert.next_escalation_at > after),
        select(func.min(OutboundMessage.due_at)).where(OutboundMessage.status == "queued",
                                                        OutboundMessage.due_at > after),
        select(func.min(ConversationState.expires_at)).where(
            ConversationState.expires_at > after),
    ]
    async with world.db.read() as session:
        found = (await session.execute(select(*(c.scalar_subquery() for c in columns)))).one()
    return min((_utc(value) for value in found if value is not None), default=None)


def _utc(value: datetime | str) -> datetime:
    # Scalar subqueries lose the column type: SQLite hands back the stored text.
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


async def advance(world: World, until: datetime,
                  fixed: list[datetime] | None = None) -> list[Delivered]:
    """Move the clock to `until`, running the tick at every instant something is due on the
    way; nobody answers. Returns what was delivered."""
    fixed = fixed if fixed is not None else daily_instants(world.scenario, world.protocol)
    until = max(until, world.clock.now())
    delivered = await world.tick()
    while True:
        now = world.clock.now()
        due = [t for t in (await next_due(world, now), next((t for t in fixed if t > now), None))
               if t is not None and t <= until]
        world.clock.set(min(due, default=until))
        delivered += await world.tick()
        if not due:
            return delivered


@dataclass
class Timeline:
    """The run: the clock, the acts planned by simulated people, and the transcript."""

    world: World
    people: People
    transcript: Transcript
    end: datetime
    pace: float = 0.0  # minimum wall seconds per simulated day (0: as fast as possible)
    _acts: list[tuple[datetime, int, Act]] = field(default_factory=list)
    _order: itertools.count[int] = field(default_factory=itertools.count)
    _fixed: list[datetime] = field(default_factory=list)
    _day: int = -1
    _day_started: float = 0.0

    def plan(self, acts: Iterable[Act]) -> None:
        for act in acts:
            heapq.heappush(self._acts, (act.at, next(self._order), act))

    def show(self, delivered: list[Delivered]) -> None:
        """Print what was delivered and let its recipients plan their answers."""
        for item in delivered:
            self.transcript.outgoing(item)
            self.plan(self.people.react(item))

    async def run(self) -> None:
        world = self.world
        scenario = world.scenario
        self._fixed = daily_instants(scenario, world.protocol)
        self.plan(self.people.spontaneous())
        self.plan(await self._visit_acts())
        await self._new_day(world.clock.now())
        self.show(await world.tick())
        while True:
            now = world.clock.now()
            due = [t for t in (await next_due(world, now), self._next_fixed(now))
                   if t is not None]
            planned = self._acts[0][0] if self._acts else None
            moment = max(min([*due, *([planned] if planned else [])], default=self.end), now)
            if moment > self.end:
                break
            await self._new_day(moment)
            world.clock.set(moment)
            while self._acts and self._acts[0][0] <= moment:
                _, _, act = heapq.heappop(self._acts)
                act = replace(act, at=moment)
                self.transcript.incoming(act)
                _, delivered = await world.send(act.person, act.text, act.action)
                self.show(delivered)
            # An instant only a person acted at needs no planning pass: whatever that made due
            # is found by the next one (every step takes all that is due up to its instant).
            if due and min(due) <= moment:
                self.show(await world.tick())
            if moment == self.end:
                break
        self.transcript.finished()

    def _next_fixed(self, now: datetime) -> datetime | None:
        return next((t for t in self._fixed if t > now), None)

    async def _new_day(self, moment: datetime) -> None:
        scenario = self.world.scenario
        local = moment.astimezone(ZoneInfo(scenario.sites[0].tz)).date()
        number = (local - scenario.first_day).days
        if number <= self._day:
            return
        if self.pace > 0 and self._day >= 0:
            # Watchable on a terminal: a simulated day lasts at least `pace` seconds.
            left = self.pace - (wall.monotonic() - self._day_started)
            if left > 0:
                await asyncio.sleep(left)
        self._day, self._day_started = number, wall.monotonic()
        if number >= scenario.days:
            self.transcript.day(number + 1, local, label="the morning after: last digests")
        else:
            self.transcript.day(number + 1, local)

    async def _visit_acts(self) -> list[Act]:
        """Coordinators record the visits that fall inside the run, late in the morning."""
        scenario = self.world.scenario
        last = scenario.first_day + timedelta(days=scenario.days - 1)
        async with self.world.db.read() as session:
            rows = (await session.execute(
                select(Visit.name, Visit.scheduled_date, Patient.subject_id, Patient.site_id)
                .join(Patient, Patient.id == Visit.patient_id)
                .where(Visit.status == "planned",
                       Visit.scheduled_date.between(scenario.first_day, last)))).all()
        acts = []
        for name, day, subject, site in rows:
            coordinator = scenario.find(f"{site}-coordinator")
            if coordinator is not None:
                at = datetime.combine(day, time(11, 0), ZoneInfo(coordinator.tz))
                acts.append(Act(at, coordinator, f"/done {subject} {name}"))
        return acts



def latest_first_day(protocol: Protocol, now: datetime, days: int) -> date:
    """The latest first day whose run is over by `now`, so the database left behind carries on
    seamlessly under `engage run` (nothing in it lies in the future)."""
    today = now.astimezone(ZoneInfo(SITES[0].tz)).date()
    first = today - timedelta(days=days)
    while end_instant(build(first, days=days, patients=1), protocol) > now:
        first -= timedelta(days=1)
    return first


@dataclass(frozen=True)
class DemoOptions:
    """What `engage demo` was asked for."""

    path: Path
    days: int = 14
    patients: int = MAX_PATIENTS
    first_day: date | None = None  # default: the latest run that is over by now
    pace: float = 0.0
    show_all: bool = False
    seed: int = 7


@dataclass(frozen=True)
class DemoResult:
    """What a finished demo left behind."""

    path: Path
    url: str
    start: datetime
    end: datetime
    chart: Path | None
    alerts: int
    errors: list[str]


async def run_demo(options: DemoOptions, protocol: Protocol, console: Console,
                   now: datetime) -> DemoResult:
    """Set the study up, run it through the simulated days, print the ending."""
    first_day = options.first_day or latest_first_day(protocol, now, options.days)
    scenario = build(first_day, days=options.days, patients=options.patients)
    clock = SimulatedClock(start_instant(scenario))
    end = end_instant(scenario, protocol)
    world = await World.create(options.path, protocol, clock, scenario)
    try:
        introduce(console, world, end)
        await world.set_up()
        slow = timedelta(minutes=protocol.escalation.ack_timeout_minutes.same_day + 12)
        people = People(scenario, slow_ack=slow, seed=options.seed)
        with Transcript(console, scenario, show_all=options.show_all) as transcript:
            timeline = Timeline(world, people, transcript, end, pace=options.pace)
            timeline.plan(people.link_chats(clock.now() + timedelta(minutes=1)))
            await timeline.run()
        transcript.heading("Adherence (the table `engage report adherence` prints)")
        await print_adherence(console, world.db, protocol, end)
        transcript.heading("Alert log: every page, escalation and acknowledgement")
        alerts = await print_alerts(console, world.db)
        chart = await show_digest(console, transcript, world, world.path.parent)
    finally:
        await world.close()
    return DemoResult(world.path, sqlite_url(world.path), clock.now(), end, chart, alerts,
                      list(world.errors))


def introduce(console: Console, world: World, end: datetime) -> None:
    """Who is in the study and how they will behave."""
    scenario = world.scenario
    console.rule("[bold]Engage demo: the SIRIUS protocol, two sites, simulated patients")
    console.print(f"database: {world.path} (fresh)", highlight=False)
    console.print(f"simulated time: {world.clock.now():%Y-%m-%d %H:%M} UTC to "
                  f"{end:%Y-%m-%d %H:%M} UTC; channels: sandbox adapters registered as "
                  "\"telegram\", \"sms\", \"wechat\" (patients' Official Account) and "
                  "\"wecom\" (staff's WeCom app)", highlight=False)
    for site in scenario.sites:
        staff = ", ".join(f"{m.role} {m.name} ({m.language}, {CHANNEL[m.channel]})"
                          for m in scenario.staff if m.site == site.id)
        console.print(f"site {site.id}: {site.name}, {site.tz}; staff: {staff}",
                      highlight=False)
    table = Table(title="patients", show_edge=False)
    for column in ("subject", "language", "channel", "dose time", "baseline", "behaviour",
                   "shown"):
        table.add_column(column)
    for p in scenario.patients:
        table.add_row(p.key, p.language, p.channel, f"{p.dose_time} {p.tz}",
                      scenario.baseline(p).isoformat(), str(p.behaviour),
                      "yes" if p.featured else "counted")
    console.print(table)


async def show_digest(console: Console, transcript: Transcript, world: World,
                      folder: Path) -> Path | None:
    """The first site's last digest as its coordinator received it, and its chart file."""
    site = world.scenario.sites[0].id
    digest = await last_digest(world.db, site)
    transcript.heading(f"Daily digest of site {site}")
    if digest is None:
        console.print("(no digest was sent)")
        return None
    console.print(f"as sent to {digest.staff} on {CHANNEL.get(digest.channel, digest.channel)} "
                  f"({digest.key}):", highlight=False)
    for page in digest.pages:
        console.print(escape(page), soft_wrap=True, highlight=False)
    path = write_chart(digest, folder)
    if path is not None:
        console.print(f"adherence chart: {path}", highlight=False, soft_wrap=True)
    return path

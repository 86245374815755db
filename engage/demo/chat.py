"""`engage chat` (`engage demo --interactive`): the demo study in a terminal, through the sandbox
channel. Be a patient (by subject id) or a staff member (by handle), type text, press a button
by its number, and see what the system answers; replies go through the same conversation core
and dispatcher as `engage run`. Reads lines from any text stream; ends on `/quit` or its end.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TextIO
from zoneinfo import ZoneInfo

from rich.console import Console
from rich.markup import escape

from engage.clock import SimulatedClock
from engage.demo.driver import advance, daily_instants, start_instant
from engage.demo.people import link_act
from engage.demo.scenario import MAX_PATIENTS, SMS, WECHAT, Person, build
from engage.demo.transcript import as_sent, local_time
from engage.demo.world import Delivered, World
from messages.channel import Choice
from trial.protocol import Protocol

# The chat starts late in the first morning, after the morning reminders and follow-ups.
CHAT_STARTS = timedelta(hours=4, minutes=30)
KEYSTROKE_TIME = timedelta(minutes=1)  # the simulated clock moves this much per line typed
DURATION = re.compile(r"^(\d+)\s*([mhd])$")
UNITS = {"m": "minutes", "h": "hours", "d": "days"}
HELP = """commands (everything else is sent as a message):
  :as SUBJECT|HANDLE   be someone else (e.g. :as SH-001, :as SH-coordinator)
  :who                 everyone you can be
  :wait 2h             let simulated time pass (m, h or d): reminders, escalations, digests
  N                    press button N of the last message that had buttons (Telegram)
  /quit                leave"""


@dataclass
class Chat:
    """The terminal side of the sandbox: who you are and the buttons you can press."""

    world: World
    console: Console
    fixed: list[datetime]
    me: Person | None = None
    buttons: dict[str, list[Choice]] = field(default_factory=dict)
    inbox: dict[str, list[Delivered]] = field(default_factory=dict)

    def show(self, delivered: list[Delivered], *, everyone: bool = True) -> None:
        """Print deliveries (yours in full, with numbered buttons) and remember the buttons."""
        pressed: dict[str, list[Choice]] = {}
        for item in delivered:
            person = item.person
            key = person.key if person else item.message.address
            self.inbox.setdefault(key, []).append(item)
            if item.message.choices:
                pressed.setdefault(key, []).extend(item.message.choices)
            if everyone or (self.me is not None and person is self.me):
                self._print(item, first=len(pressed.get(key, [])) - len(item.message.choices))
        self.buttons.update(pressed)

    def _print(self, item: Delivered, *, first: int = 0) -> None:
        person = item.person
        mine = self.me is not None and person is self.me
        who = "you" if mine else (person.label if person else item.message.address)
        tz = person.tz if person else "UTC"
        text = item.message.text  # by SMS the whole text as sent (choice line, signature)
        if item.channel == WECHAT:  # no buttons on WeChat: the answers printed as words
            text = as_sent(item.channel, item.template_id, text, item.message.choices,
                           item.language)
        style = "bold" if mine else "dim"
        if item.lane == "safety":
            style += " red"
        head = f"[{local_time(item.at, tz)}] ◀ {who} ({item.channel}, {item.language})"
        self.console.print(f"[{style}]{escape(head)}[/{style}]", highlight=False)
        for line in text.splitlines():
            self.console.print(f"    {escape(line)}", highlight=False, soft_wrap=True)
        if item.channel not in (SMS, WECHAT) and item.message.choices:
            numbered = "  ".join(f"{first + n}) [{c.label}]"
                                 for n, c in enumerate(item.message.choices, start=1))
            self.console.print(f"    {escape(numbered)}", highlight=False, soft_wrap=True)
        if item.message.image is not None:
            self.console.print(f"    [image: {len(item.message.image) // 1024} KB PNG]")

    def people(self) -> None:
        scenario = self.world.scenario
        patients = ", ".join(f"{p.key} ({p.language}, {p.channel})" for p in scenario.patients)
        staff = ", ".join(f"{s.key} ({s.language}, {s.channel})" for s in scenario.staff)
        self.console.print(f"patients: {patients}", highlight=False, soft_wrap=True)
        self.console.print(f"staff: {staff}", highlight=False, soft_wrap=True)

    def become(self, key: str) -> bool:
        person = self.world.scenario.find(key)
        if person is None:
            self.console.print(f"nobody called {escape(key)!r}; :who lists everyone")
            return False
        self.me = person
        how = f"{person.channel}, {person.language}"
        self.console.print(f"[bold]you are {escape(person.label)} ({how}); local time "
                           f"{local_time(self.world.clock.now(), person.tz)}[/bold]")
        recent = self.inbox.get(person.key, [])[-3:]
        if recent:
            self.console.print("your latest messages:")
            self.buttons.pop(person.key, None)
            self.show(recent, everyone=False)
        return True

    async def wait(self, text: str) -> None:
        match = DURATION.match(text.strip().lower())
        if match is None:
            self.console.print("say how long: :wait 30m, :wait 2h or :wait 1d")
            return
        span = timedelta(**{UNITS[match.group(2)]: int(match.group(1))})
        until = self.world.clock.now() + span
        self.show(await advance(self.world, until, self.fixed))
        self.console.print(f"[dim]… {escape(match.group(0))} later[/dim]")

    async def say(self, text: str) -> None:
        """Send a line as the current person (a number presses a Telegram or WeCom button)."""
        me = self.me
        assert me is not None
        world = self.world
        self.show(await advance(world, world.clock.now() + KEYSTROKE_TIME, self.fixed))
        action, label = None, ""
        choices = self.buttons.get(me.key, [])
        if me.channel not in (SMS, WECHAT) and text.isdigit() and 1 <= int(text) <= len(choices):
            choice = choices[int(text) - 1]
            action, label = choice.action, choice.label
        shown = f"pressed [{label}]" if action else text
        self.console.print(f"[green][{local_time(world.clock.now(), me.tz)}] ▶ you "
                           f"({me.channel}): {escape(shown)}[/green]", highlight=False)
        handled, delivered = await world.send(me, "" if action else text, action)
        if not delivered:
            self.console.print(f"[dim](no reply: {escape(handled.outcome)})[/dim]")
        self.show(delivered)

    async def line(self, text: str) -> bool:
        """Handle one typed line; False to stop."""
        text = text.strip()
        if not text:
            return True
        if text in ("/quit", ":quit", ":q"):
            return False
        command, _, rest = text.partition(" ")
        if command == ":help":
            self.console.print(HELP, highlight=False)
        elif command == ":who":
            self.people()
        elif command == ":as":
            self.become(rest)
        elif command == ":wait":
            await self.wait(rest)
        elif self.me is None:
            self.become(text)
        else:
            await self.say(text)
        return True


async def run_chat(path: Path, protocol: Protocol, console: Console, lines: TextIO,
                   today: date, *, patients: int = MAX_PATIENTS) -> int:
    """Set the demo study up on a fresh database and chat with it until /quit or end of input."""
    scenario = build(today, days=2, patients=patients)
    clock = SimulatedClock(start_instant(scenario))
    world = await World.create(path, protocol, clock, scenario)
    where = world.path
    try:
        await world.set_up()
        for person in scenario.patients:
            if person.channel != SMS and person.link_code:
                act = link_act(clock.now(), person)  # /start CODE, or a WeChat QR scan
                await world.send(person, act.text, act.action)
        chat = Chat(world, console, daily_instants(scenario, protocol))
        chat.show(await advance(world, clock.now() + CHAT_STARTS, chat.fixed), everyone=False)
        here = clock.now().astimezone(ZoneInfo(scenario.sites[0].tz))
        console.rule("[bold]Engage chat (sandbox channel)")
        console.print(f"database: {where} (fresh); simulated time "
                      f"{here:%Y-%m-%d %H:%M} in {scenario.sites[0].tz}. The morning reminders "
                      "have gone out; nobody has answered yet.", highlight=False,
                      soft_wrap=True)
        chat.people()
        console.print(HELP, highlight=False)
        console.print("who are you? type a subject id or a staff handle")
        interactive = lines.isatty()
        while True:
            if interactive:
                console.print("> ", end="")
            text = lines.readline()
            if not text or not await chat.line(text):
                break
        if world.errors:
            for error in world.errors:
                console.print(f"[red]error: {escape(error)}[/red]")
            return 1
        console.print(f"bye; the database is kept: {where}", highlight=False,
                      soft_wrap=True)
        return 0
    finally:
        await world.close()

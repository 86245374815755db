"""The demo's live transcript: who said what on which channel, in their language, at their local
time; the escalation chain; a progress bar of simulated days (on a terminal)."""

from __future__ import annotations

from collections import Counter
from contextlib import AbstractContextManager
from datetime import date, datetime
from types import TracebackType
from zoneinfo import ZoneInfo

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from bot.channels.wechat.templates import PROACTIVE
from engage.demo.people import WORDS, Act
from engage.demo.scenario import SMS, WECHAT, WECOM, Person, Scenario
from engage.demo.world import Delivered
from messages import sms as sms_text
from messages.channel import Choice

CHANNEL = {"telegram": "Telegram", "sms": "SMS", WECHAT: "WeChat", WECOM: "WeCom"}
FULL_DAYS = 2  # days on which every message of the featured patients is shown
QUIET_REMINDERS = frozenset({"dose.reminder"})
QUIET_ACKS = frozenset({"dose.taken_ack", "dose.snoozed_ack"})
DOSE_WORDS = frozenset(w for words in WORDS.values() for k, w in words.items()
                       if k in ("taken", "snooze"))
INDENT = " " * 8


def local_time(at: datetime, tz: str) -> str:
    """`08:00+08`: the wall time where the person is, with its UTC offset."""
    local = at.astimezone(ZoneInfo(tz))
    offset = local.strftime("%z")
    return f"{local:%H:%M}{offset[:3]}"


def buttons(choices: tuple[Choice, ...]) -> str:
    return "  ".join(f"[{c.label}]" for c in choices)


def as_sent(channel: str, template_id: str, text: str, choices: tuple[Choice, ...],
            language: str) -> str:
    """A message as its channel shows it: on WeChat the answers printed as words after the
    text (no buttons there), a message we start being a template message; on Telegram and
    WeCom (a template card) the buttons."""
    if channel == WECHAT:
        words = sms_text.choice_line([(c.sms_word, c.label) for c in choices], language)
        kind = "template message" if template_id in PROACTIVE else "customer-service message"
        return f"{text}\n{words}\n({kind})" if words else f"{text}\n({kind})"
    if choices:
        return f"{text}\n{buttons(choices)}"
    return text


class Transcript(AbstractContextManager["Transcript"]):
    """Prints the conversation as it happens; people not featured are only counted."""

    def __init__(self, console: Console, scenario: Scenario, *, show_all: bool = False) -> None:
        self.console = console
        self.scenario = scenario
        self.show_all = show_all
        self.hidden: Counter[str] = Counter()
        self._hidden_people: set[str] = set()
        self._quiet: set[str] = set()  # featured patients in an everyday exchange, not shown
        self._day_number = 0
        self._digests: set[tuple[str, str]] = set()
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    # -- the progress bar --------------------------------------------------------------------
    def __enter__(self) -> Transcript:
        if self.console.is_terminal:
            self._progress = Progress(
                TextColumn("[bold]simulated days"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.description}"), TimeElapsedColumn(), console=self.console,
                transient=True)
            self._progress.start()
            self._task = self._progress.add_task("", total=self.scenario.days)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def day(self, number: int, local_day: date, *, label: str = "") -> None:
        """A new simulated day begins (numbered from 1)."""
        self.flush_hidden()
        self._day_number = number
        label = label or f"day {number} of {self.scenario.days}"
        label = f"{local_day:%a %d %b %Y} · {label}"
        self.console.rule(f"[bold]{label}")
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, completed=number - 1,
                                  description=f"{local_day:%a %d %b}")

    def finished(self) -> None:
        self.flush_hidden()
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, completed=self.scenario.days)

    def flush_hidden(self) -> None:
        if self.hidden:
            parts = ", ".join(f"{n} {what}" for what, n in sorted(self.hidden.items()))
            self.console.print(f"[dim]{INDENT}(not shown: {parts}, of "
                               f"{len(self._hidden_people)} patients)[/dim]")
            self.hidden.clear()
            self._hidden_people.clear()

    # -- lines -------------------------------------------------------------------------------
    def heading(self, text: str) -> None:
        self.console.print()
        self.console.rule(f"[bold cyan]{escape(text)}")

    def note(self, text: str, style: str = "dim") -> None:
        self.console.print(f"[{style}]{escape(text)}[/{style}]", soft_wrap=True)

    def _routine(self, person: Person, template_id: str) -> bool:
        """After the first days, a featured patient's everyday reminder, answer and thanks are
        only counted; anything else (a follow-up, a notice, a report) shows the exchange."""
        if self.show_all or self._day_number <= FULL_DAYS:
            return False
        if template_id in QUIET_REMINDERS:
            self._quiet.add(person.key)
            return True
        if template_id in QUIET_ACKS:
            return person.key in self._quiet
        self._quiet.discard(person.key)
        return False

    def _shown(self, person: Person | None, *, safety: bool = False) -> bool:
        return (self.show_all or safety or person is None or not person.is_patient
                or person.featured)

    def outgoing(self, item: Delivered) -> None:
        """A message the system sent, as the recipient sees it."""
        person = item.person
        if item.template_id.startswith("digest."):
            self._digest(item)
            return
        safety = item.lane == "safety"
        if person is not None and not self._shown(person, safety=safety):
            self._count(person, "messages out")
            return
        if person is not None and self._routine(person, item.template_id):
            self._count(person, "routine messages out")
            return
        who = person.label if person else item.message.address
        tz = person.tz if person else "UTC"
        text = item.message.text  # by SMS the whole text as sent (choice line, signature)
        if item.channel != SMS:
            text = as_sent(item.channel, item.template_id, text, item.message.choices,
                           item.language)
        if item.message.image is not None:
            text += f"\n[image: {len(item.message.image) // 1024} KB PNG]"
        style = "bold red" if safety else ("yellow" if person and not person.is_patient
                                            else "cyan")
        self._line(item.at, tz, who, f"◀ {CHANNEL[item.channel]} {item.language}", text, style)

    def incoming(self, act: Act) -> None:
        """What a simulated person sent."""
        person = act.person
        if not self._shown(person):
            self._count(person, "messages in")
            return
        if person.key in self._quiet and _is_dose_answer(act):
            self._count(person, "routine answers")
            return
        self._quiet.discard(person.key)
        text = act.shown or (f"pressed [{act.label}]" if act.action else act.text)
        style = "green" if person.is_patient else "magenta"
        self._line(act.at, person.tz, person.label, f"▶ {CHANNEL[person.channel]}", text, style)

    def _count(self, person: Person, what: str) -> None:
        self._hidden_people.add(person.key)
        self.hidden[what] += 1

    def _digest(self, item: Delivered) -> None:
        person = item.person
        site = person.site if person else "?"
        local_day = item.at.astimezone(ZoneInfo(person.tz if person else "UTC")).date()
        key = (site, local_day.isoformat())
        if key in self._digests:
            return
        self._digests.add(key)
        self._line(item.at, person.tz if person else "UTC", f"site {site} staff",
                   "◀ chat app", "daily digest (text and adherence chart) to the site's "
                   "coordinator, investigator and PI (on Telegram or WeCom)", "yellow dim")

    def _line(self, at: datetime, tz: str, who: str, how: str, text: str, style: str) -> None:
        lines = text.splitlines() or [""]
        head = (f"[dim]{local_time(at, tz)}[/dim] [{style}]{escape(who):<30} "
                f"{escape(how):<15}[/{style}] {escape(lines[0])}")
        self.console.print(head, soft_wrap=True, highlight=False)
        for line in lines[1:]:
            self.console.print(f"{INDENT}{' ' * 47}{escape(line)}", soft_wrap=True,
                               highlight=False)


def _is_dose_answer(act: Act) -> bool:
    if act.action is not None:
        return act.action.startswith(("dose:taken", "dose:snooze"))
    return act.text in DOSE_WORDS

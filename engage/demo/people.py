"""How the simulated people answer what the sandbox delivers to them.

Patients answer reminders by their behaviour (a button on Telegram, a word by SMS, the menu's
服药已完成 on WeChat, in their own language); a few also write on their own (a fever, a
hospital admission). Coordinators press Acknowledge on an urgent page (a Telegram button, a
WeCom card's button) and later resolve it with a note. Everything is planned as an
`Act` at a simulated instant; the driver sends it through the sandbox when the clock gets there.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from bot.channels.wechat.inbound import MENU, MENU_NAMES
from engage.demo.scenario import SMS, TELEGRAM, WECHAT, Behaviour, Person, Scenario
from engage.demo.world import Delivered

DOSE_PROMPTS = ("dose.reminder", "dose.reminder_hold_for_visit", "dose.follow_up")
PAGES = ("alert.page", "alert.page_sae", "alert.sae_reminder")
# Minutes a patient takes to answer: a few typical delays, so that many answers share an instant
# and the simulation has fewer instants to visit.
ANSWER_MINUTES = (3, 7, 12, 25)

# What a patient types by SMS (or on Telegram without pressing a button), by language.
WORDS = {
    "zh": {"taken": "已服", "snooze": "稍后", "skip": "跳过", "missed": "漏服", "stop": "退订"},
    "en": {"taken": "TAKEN", "snooze": "SNOOZE", "skip": "SKIP", "missed": "missed",
           "stop": "STOP"},
}
REPORTS = {
    Behaviour.FEVER: {"zh": "今天下午发烧了，38.6度，有点发冷",
                      "en": "I have a fever, 38.6 and chills"},
    Behaviour.HOSPITAL: {"zh": "我昨晚因为肺炎住院了",
                         "en": "I was admitted to hospital last night with pneumonia"},
}
RESOLUTIONS = {"zh": "已电话联系患者，安排今日门诊复查",
               "en": "Called the patient; seen in clinic today"}


@dataclass(frozen=True)
class Act:
    """Something a simulated person will send at `at`: text, or a button's action."""

    at: datetime
    person: Person
    text: str = ""
    action: str | None = None
    label: str = ""  # the pressed button's label, for the transcript
    shown: str = ""  # how the transcript shows it, when not a button press or a text


@dataclass
class People:
    """The simulated people's memory: which prompts they saw, which alerts they took on."""

    scenario: Scenario
    slow_ack: timedelta  # how long a busy coordinator takes over their first urgent page
    seed: int = 7
    _prompts: dict[int, int] = field(default_factory=dict)  # dose id -> prompts seen
    _plans: dict[int, str] = field(default_factory=dict)  # dose id -> the day's plan
    _alerts: set[tuple[str, int]] = field(default_factory=set)
    _first_page: set[str] = field(default_factory=set)  # staff already slow once
    _sae_reported: set[int] = field(default_factory=set)

    def day_of(self, person: Person, at: datetime) -> int:
        """Simulated day number (0-based) of an instant in the person's time zone."""
        local = at.astimezone(ZoneInfo(person.tz)).date()
        return (local - self.scenario.first_day).days

    def link_chats(self, at: datetime) -> list[Act]:
        """Telegram patients send `/start CODE` with the code from their enrolment slip;
        WeChat patients scan the slip's QR code, whose scene is the code (`engage patient
        qr`): following the account with it links them."""
        return [link_act(at + timedelta(seconds=20 * n), person)
                for n, person in enumerate(p for p in self.scenario.patients
                                           if p.channel != SMS and p.link_code)]

    def spontaneous(self) -> list[Act]:
        """What patients write without being asked (symptom reports), over the whole run."""
        acts = []
        for person in self.scenario.patients:
            if person.behaviour in REPORTS:
                day = self.scenario.first_day + timedelta(days=self.scenario.event_day[person.key])
                hour = time(15, 10) if person.behaviour is Behaviour.FEVER else time(9, 40)
                acts.append(Act(_at(day, hour, person.tz), person,
                                REPORTS[person.behaviour][person.language]))
        return acts

    def react(self, item: Delivered) -> list[Act]:
        """What the recipient of a delivered message does about it."""
        person = item.person
        if person is None:
            return []
        if person.is_patient and item.template_id in DOSE_PROMPTS and item.dose_id is not None:
            return self._answer_dose(person, item)
        if not person.is_patient and item.template_id in PAGES and item.alert_id is not None:
            return self._take_page(person, item)
        return []

    # -- patients ----------------------------------------------------------------------------
    def _answer_dose(self, person: Person, item: Delivered) -> list[Act]:
        dose_id = item.dose_id
        assert dose_id is not None
        seen = self._prompts.get(dose_id, 0) + 1
        self._prompts[dose_id] = seen
        day = self.day_of(person, item.at)
        event = self.scenario.event_day.get(person.key, 10**6)
        rng = random.Random(f"{self.seed}:{person.key}:{day}")
        behaviour = person.behaviour or Behaviour.RELIABLE
        minutes = rng.choice(ANSWER_MINUTES)
        if behaviour is Behaviour.SNOOZER:
            return [self._dose_act(person, item, "snooze" if seen == 1 else "taken", 2)]
        if behaviour is Behaviour.STOP and day >= event:
            return [Act(item.at + timedelta(minutes=5), person, _stop_word(person))] \
                if seen == 1 and day == event else []
        if behaviour is Behaviour.STOPS_ANSWERING and day >= event:
            return []
        if behaviour is Behaviour.HOSPITAL and event <= day <= event + 1:
            return []  # in hospital: no answer for two days
        if behaviour is Behaviour.FORGETFUL:
            return self._forgetful(person, item, seen, day == event, rng)
        return [self._dose_act(person, item, "taken", minutes)] if seen == 1 else []

    def _forgetful(self, person: Person, item: Delivered, seen: int, event: bool,
                   rng: random.Random) -> list[Act]:
        dose_id = item.dose_id
        assert dose_id is not None
        if seen == 1:
            self._plans[dose_id] = ("missed" if event else
                                    rng.choices(["now", "late", "silent"], [5, 3, 2])[0])
        plan = self._plans.get(dose_id)
        if plan == "now" and seen == 1:
            return [self._dose_act(person, item, "taken", rng.choice(ANSWER_MINUTES[1:]))]
        if plan == "late" and item.template_id == "dose.follow_up":
            return [self._dose_act(person, item, "taken", rng.choice(ANSWER_MINUTES))]
        if plan == "missed" and item.template_id == "dose.follow_up":
            return [Act(item.at + timedelta(minutes=8), person, WORDS[person.language]["missed"])]
        return []

    @staticmethod
    def _dose_act(person: Person, item: Delivered, answer: str, minutes: int) -> Act:
        at = item.at + timedelta(minutes=minutes)
        if person.channel == WECHAT and f"dose:{answer}" in MENU.values():
            # No buttons on a WeChat message: the account's menu has 服药已完成.
            key = next(k for k, v in MENU.items() if v == f"dose:{answer}")
            return Act(at, person, action=MENU[key], label=MENU_NAMES[key],
                       shown=f"pressed the menu's [{MENU_NAMES[key]}]")
        if person.channel == TELEGRAM:
            for choice in item.message.choices:
                if choice.action.startswith(f"dose:{answer}:"):
                    return Act(at, person, action=choice.action, label=choice.label)
        return Act(at, person, WORDS[person.language][answer])

    # -- staff -------------------------------------------------------------------------------
    def _take_page(self, person: Person, item: Delivered) -> list[Act]:
        alert_id = item.alert_id
        assert alert_id is not None
        reported = next((c for c in item.message.choices
                         if c.action == f"alert:sae_reported:{alert_id}"), None)
        if reported is not None:
            # An SAE deadline reminder: the sponsor was told; the reminders stop.
            if alert_id in self._sae_reported:
                return []
            self._sae_reported.add(alert_id)
            return [Act(item.at + timedelta(minutes=30), person, action=reported.action,
                        label=reported.label)]
        if person.role != "coordinator" or (person.key, alert_id) in self._alerts:
            return []
        self._alerts.add((person.key, alert_id))
        button = next((c for c in item.message.choices
                       if c.action == f"alert:ack:{alert_id}"), None)
        if button is None:
            return []
        delay = timedelta(minutes=6)
        if person.slow_first_page and person.key not in self._first_page:
            # Busy in clinic: the acknowledgement timeout passes and the chain moves up first.
            self._first_page.add(person.key)
            delay = self.slow_ack
        ack = Act(item.at + delay, person, action=button.action, label=button.label)
        note = RESOLUTIONS.get(person.language, RESOLUTIONS["en"])
        resolve = Act(ack.at + timedelta(minutes=50), person, f"/resolve {alert_id} {note}")
        return [ack, resolve]


def link_act(at: datetime, person: Person) -> Act:
    """How a patient links their chat: `/start CODE` on Telegram, a scan on WeChat."""
    if person.channel == WECHAT:
        return Act(at, person, action=f"link:{person.link_code}",
                   shown="scanned the clinic's QR code (its scene is the link code) and followed "
                         "the account")
    return Act(at, person, f"/start {person.link_code}")


def _at(day: date, moment: time, tz: str) -> datetime:
    return datetime.combine(day, moment, tzinfo=ZoneInfo(tz))


def _stop_word(person: Person) -> str:
    return WORDS[person.language]["stop"] if person.channel == SMS else "/stop"

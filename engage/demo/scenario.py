"""Who is in the demo study: two sites in different time zones, their staff, and about twenty
patients in Chinese and English, on Telegram or SMS (one patient on WeChat, and one coordinator
on WeCom, as at the hospitals in mainland China), each with a way of behaving."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from enum import StrEnum

TELEGRAM = "telegram"
SMS = "sms"
WECHAT = "wechat"  # a patient's Official Account follower: their openid
WECOM = "wecom"  # a staff member of the hospital's WeCom corp: their userid


class Behaviour(StrEnum):
    """How a simulated patient answers."""

    RELIABLE = "reliable"
    FORGETFUL = "forgetful"
    STOPS_ANSWERING = "stops answering"
    SNOOZER = "snoozes, then takes"
    FEVER = "reports a fever"
    HOSPITAL = "admitted to hospital"
    STOP = "sends STOP"


@dataclass(frozen=True)
class SiteSpec:
    id: str
    name: str
    tz: str
    phone: str


@dataclass
class Person:
    """A simulated patient or staff member and where the sandbox reaches them."""

    key: str  # subject id, or a staff handle such as SH-coordinator
    kind: str  # patient | staff
    site: str
    tz: str
    language: str
    channel: str  # telegram | sms | wechat | wecom
    address: str  # Telegram user id, E.164 phone, WeChat openid or WeCom userid
    name: str = ""
    role: str = ""
    behaviour: Behaviour | None = None
    dose_time: str = ""
    baseline_offset: int = -1  # baseline = first simulated day + this; enrolled the day before
    featured: bool = False  # shown message by message in the transcript
    # Staff: take longer than the acknowledgement timeout over the first urgent page, so the
    # escalation chain is seen moving up before someone answers.
    slow_first_page: bool = False
    record_id: int | None = None  # patients.id or staff.id once set up
    link_code: str | None = None

    @property
    def is_patient(self) -> bool:
        return self.kind == "patient"

    @property
    def label(self) -> str:
        """How the transcript names this person."""
        if self.is_patient:
            return self.key
        return f"{self.key} ({self.name})"


@dataclass
class Scenario:
    """Everything the demo sets up before the clock starts."""

    sites: list[SiteSpec]
    staff: list[Person]
    patients: list[Person]
    first_day: date
    days: int
    # Day (0-based) on which each patient's special behaviour happens.
    event_day: dict[str, int] = field(default_factory=dict)

    @property
    def people(self) -> list[Person]:
        return [*self.staff, *self.patients]

    def baseline(self, patient: Person) -> date:
        return self.first_day + timedelta(days=patient.baseline_offset)

    def find(self, key: str) -> Person | None:
        """A person by subject id or staff handle (case-insensitive)."""
        wanted = key.strip().lower()
        return next((p for p in self.people if p.key.lower() == wanted), None)


SITES = [
    SiteSpec("SH", "Shanghai demo hospital", "Asia/Shanghai", "+862112345678"),
    SiteSpec("XJ", "Urumqi demo hospital", "Asia/Urumqi", "+869914567890"),
]

# (handle, role, name, language, Telegram id, slow over the first urgent page)
STAFF = [
    ("SH-coordinator", "coordinator", "Wang Fang", "zh", 810001, True),
    ("SH-investigator", "investigator", "Dr Zhang Wei", "zh", 810002, False),
    ("SH-pi", "pi", "Prof Chen Jun", "zh", 810003, False),
    ("XJ-coordinator", "coordinator", "Aynur Tursun", "en", 820001, False),
    ("XJ-investigator", "investigator", "Dr Li Na", "en", 820002, False),
    ("XJ-pi", "pi", "Prof Ma Lin", "en", 820003, False),
]

# Staff on WeCom instead of Telegram (handle -> WeCom userid): the Shanghai coordinator, who is
# paged first at her site.
WECOM_STAFF = {"SH-coordinator": "WangFang"}

# The first rows matter most: a smaller demo (--patients N) keeps the first N, so every
# behaviour the demo must show comes early. (subject, language, channel, dose time,
# behaviour, baseline offset, featured)
PATIENTS: list[tuple[str, str, str, str, Behaviour, int, bool]] = [
    ("SH-001", "zh", WECHAT, "08:00", Behaviour.RELIABLE, -1, True),
    ("XJ-001", "en", SMS, "08:00", Behaviour.RELIABLE, -1, True),
    ("SH-002", "zh", SMS, "08:30", Behaviour.FEVER, -1, True),
    ("XJ-002", "en", TELEGRAM, "20:00", Behaviour.HOSPITAL, -1, True),
    ("SH-003", "zh", SMS, "20:00", Behaviour.STOP, -1, True),
    ("XJ-003", "en", TELEGRAM, "08:00", Behaviour.SNOOZER, -1, True),
    ("SH-004", "zh", TELEGRAM, "20:00", Behaviour.FORGETFUL, -1, True),
    ("XJ-004", "en", SMS, "20:00", Behaviour.STOPS_ANSWERING, -1, True),
    # Enrolled earlier: the week-4 visit falls inside the demo (notices, dose held).
    ("SH-005", "zh", TELEGRAM, "08:30", Behaviour.RELIABLE, -25, True),
    ("SH-006", "en", TELEGRAM, "08:00", Behaviour.RELIABLE, -1, False),
    ("XJ-005", "zh", SMS, "08:00", Behaviour.RELIABLE, -1, False),
    ("SH-007", "zh", SMS, "08:00", Behaviour.FORGETFUL, -1, False),
    ("XJ-006", "en", TELEGRAM, "20:00", Behaviour.RELIABLE, -25, False),
    ("SH-008", "zh", TELEGRAM, "20:00", Behaviour.SNOOZER, -1, False),
    ("XJ-007", "zh", TELEGRAM, "08:00", Behaviour.FORGETFUL, -1, False),
    ("SH-009", "en", SMS, "08:30", Behaviour.RELIABLE, -1, False),
    ("XJ-008", "en", SMS, "20:00", Behaviour.RELIABLE, -1, False),
    ("SH-010", "zh", TELEGRAM, "08:00", Behaviour.RELIABLE, -1, False),
    ("XJ-009", "zh", SMS, "20:00", Behaviour.FORGETFUL, -1, False),
    ("SH-011", "zh", SMS, "20:00", Behaviour.RELIABLE, -1, False),
]
MAX_PATIENTS = len(PATIENTS)

# Day of the special behaviour, for a two-week demo; shorter demos pull them earlier.
EVENT_DAYS = {Behaviour.FEVER: 2, Behaviour.HOSPITAL: 3, Behaviour.STOP: 4,
              Behaviour.STOPS_ANSWERING: 3, Behaviour.FORGETFUL: 5}


def build(first_day: date, *, days: int = 14, patients: int = MAX_PATIENTS) -> Scenario:
    """The demo's sites, staff and the first `patients` patients."""
    if not 1 <= patients <= MAX_PATIENTS:
        raise ValueError(f"the demo has between 1 and {MAX_PATIENTS} patients")
    if days < 1:
        raise ValueError("the demo runs for at least one day")
    tz = {site.id: site.tz for site in SITES}
    staff = [Person(key=handle, kind="staff", site=handle.split("-")[0],
                    tz=tz[handle.split("-")[0]], language=language,
                    channel=WECOM if handle in WECOM_STAFF else TELEGRAM,
                    address=WECOM_STAFF.get(handle, str(telegram_id)), name=name, role=role,
                    slow_first_page=slow)
             for handle, role, name, language, telegram_id, slow in STAFF]
    people = []
    for n, (subject, language, channel, dose_time, behaviour, offset, featured) in enumerate(
            PATIENTS[:patients]):
        site = subject.split("-")[0]
        address = {TELEGRAM: str(710001 + n), WECHAT: f"oDemo_{subject}"}.get(
            channel, f"+86139{n + 1:08d}")
        people.append(Person(key=subject, kind="patient", site=site, tz=tz[site],
                             language=language, channel=channel, address=address,
                             behaviour=behaviour, dose_time=dose_time,
                             baseline_offset=offset, featured=featured))
    last = max(days - 1, 0)
    event_day = {p.key: min(EVENT_DAYS[p.behaviour], max(1, last))
                 for p in people if p.behaviour in EVENT_DAYS}
    return Scenario(list(SITES), staff, people, first_day, days, event_day)

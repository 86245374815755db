"""The protocol file: everything trial-specific, loaded from TOML and validated."""

from __future__ import annotations

import tomllib
from datetime import date, time
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from trial.criteria import RULE_NAMES

LANGUAGES = ("zh", "en")
ROLES = ("coordinator", "investigator", "pi", "monitor", "admin", "medical_monitor")


class Tier(StrEnum):
    """Triage tier of a report, most urgent first."""

    EMERGENCY = "emergency"
    SAME_DAY = "same_day"
    ROUTINE = "routine"

    @property
    def rank(self) -> int:
        """Higher is more urgent."""
        return {Tier.ROUTINE: 0, Tier.SAME_DAY: 1, Tier.EMERGENCY: 2}[self]

    @property
    def is_urgent(self) -> bool:
        """Emergency and same-day reports page staff at once."""
        return self is not Tier.ROUTINE


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _parse_clock(value: object) -> object:
    if isinstance(value, str):
        try:
            hour, minute = value.split(":")
            return time(int(hour), int(minute))
        except ValueError as exc:
            raise ValueError(f"not a time of day HH:MM: {value!r}") from exc
    return value


ClockTime = Annotated[time, Field(description="local time of day, HH:MM")]


class Localized(_Strict):
    """A short text in every catalogue language."""

    zh: str = Field(min_length=1)
    en: str = Field(min_length=1)

    def get(self, language: str) -> str:
        """The text in one language."""
        return self.zh if language == "zh" else self.en


class LocalizedWords(_Strict):
    """Word lists in every catalogue language."""

    zh: list[str] = Field(default_factory=list)
    en: list[str] = Field(default_factory=list)

    def all(self) -> list[str]:
        """Every word, both languages."""
        return [*self.zh, *self.en]


class Study(_Strict):
    id: str = Field(min_length=1)
    registry_id: str = ""
    protocol_id: str = ""
    end_week: int = Field(gt=0)


class Dose(_Strict):
    capsules: int = Field(gt=0)
    strength_mg: float = Field(gt=0)
    times_per_day: Literal[1] = 1
    missed_dose_take_if_hours_before_next: int = Field(default=12, ge=0, le=24)
    label: dict[str, Localized]

    @property
    def total_mg(self) -> float:
        """Strength of one daily dose."""
        return round(self.capsules * self.strength_mg, 3)


class Phase(_Strict):
    name: str = Field(min_length=1)
    start_week: int = Field(ge=0)
    end_week: int = Field(gt=0)
    dose_label: str

    @model_validator(mode="after")
    def _ordered(self) -> Phase:
        if self.end_week <= self.start_week:
            raise ValueError("end_week must be after start_week")
        return self


class Reminders(_Strict):
    follow_up_minutes: int = Field(gt=0)
    cutoff_minutes: int = Field(gt=0, le=24 * 60)
    snooze_minutes: int = Field(default=30, gt=0)
    max_snoozes: int = Field(default=2, ge=0)
    link_code_ttl_hours: int = Field(default=72, gt=0)
    link_code_attempts_per_hour: int = Field(default=10, gt=0)
    questionnaire_timeout_minutes: int = Field(default=60, gt=0)
    checkin_weekday: int = Field(default=1, ge=1, le=7)
    checkin_time: ClockTime = time(10, 0)

    _clock = field_validator("checkin_time", mode="before")(_parse_clock)

    @model_validator(mode="after")
    def _follow_up_before_cutoff(self) -> Reminders:
        if self.follow_up_minutes >= self.cutoff_minutes:
            raise ValueError("follow_up_minutes must be before cutoff_minutes")
        return self


class QuietHours(_Strict):
    start: ClockTime
    end: ClockTime

    _clock = field_validator("start", "end", mode="before")(_parse_clock)

    def contains(self, moment: time) -> bool:
        """Whether a local time of day falls in the quiet window (which may span midnight)."""
        if self.start == self.end:
            return False
        if self.start < self.end:
            return self.start <= moment < self.end
        return moment >= self.start or moment < self.end


class Sms(_Strict):
    daily_cap: int = Field(gt=0)
    validity_period_seconds: int = Field(default=14400, ge=1, le=36000)
    forbidden_words: list[str] = Field(default_factory=list)
    # Sites (codes) whose SMS route cannot receive replies (e.g. international SMS into
    # mainland China): their patients' SMS never invite a reply and carry no choice line.
    one_way_sites: list[str] = Field(default_factory=list)
    # Which routine SMS the daily cap keeps first, by template id prefix (the longest matching
    # prefix wins; `trial.delivery.importance`); any other message ranks `default_importance`.
    importance: dict[str, int] = Field(default_factory=dict)
    default_importance: int = 10


class VisitTemplate(_Strict):
    name: str = Field(pattern=r"^[A-Z][A-Z0-9]*$")
    week: int
    day: int
    window_minus: int = Field(ge=0)
    window_plus: int = Field(ge=0)
    fasting: bool = False
    bring_medication: bool = False
    hold_dose: bool = False
    notify: bool = True


class Visits(_Strict):
    notice_days_before: list[int] = Field(min_length=1)
    notice_time: ClockTime
    # The time of day visits (and their trough blood draws) usually take place: a visit's
    # hold_dose applies only to patients whose dose time falls before it.
    usual_time: ClockTime | None = None
    table: list[VisitTemplate] = Field(min_length=1)

    _clock = field_validator("notice_time", "usual_time", mode="before")(_parse_clock)

    @field_validator("notice_days_before")
    @classmethod
    def _positive(cls, days: list[int]) -> list[int]:
        if any(d <= 0 for d in days):
            raise ValueError("notice days must be positive")
        return sorted(set(days), reverse=True)

    @model_validator(mode="after")
    def _unique_names(self) -> Visits:
        names = [v.name for v in self.table]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate visit names: {', '.join(duplicates)}")
        held = [v.name for v in self.table if v.hold_dose]
        if held and self.usual_time is None:
            raise ValueError(f"hold_dose ({', '.join(held)}) needs visits.usual_time, the time "
                             "visits usually take place: only a dose due before it is held")
        return self

    def by_name(self, name: str) -> VisitTemplate | None:
        """The visit template of that name."""
        return next((v for v in self.table if v.name == name), None)


class Criteria(_Strict):
    """Which triage criteria (the engine's rule names) belong to which tier."""

    emergency: list[str] = Field(default_factory=list)
    same_day: list[str] = Field(default_factory=list)
    routine: list[str] = Field(default_factory=list)

    @field_validator("emergency", "same_day", "routine")
    @classmethod
    def _known(cls, names: list[str]) -> list[str]:
        unknown = [n for n in names if n not in RULE_NAMES]
        if unknown:
            raise ValueError(f"unknown criterion: {', '.join(unknown)}")
        return names

    @model_validator(mode="after")
    def _each_once(self) -> Criteria:
        listed = [*self.emergency, *self.same_day, *self.routine]
        twice = sorted({n for n in listed if listed.count(n) > 1})
        if twice:
            raise ValueError(f"criterion in more than one tier: {', '.join(twice)}")
        missing = [n for n in RULE_NAMES if n not in listed]
        if missing:
            raise ValueError(f"criterion without a tier: {', '.join(missing)}")
        return self

    def tier_of(self, name: str) -> Tier:
        """The tier a criterion puts a report in."""
        if name in self.emergency:
            return Tier.EMERGENCY
        return Tier.SAME_DAY if name in self.same_day else Tier.ROUTINE


class Triage(_Strict):
    fever_c: float = Field(ge=35, le=42)
    low_grade_fever_c: float = Field(ge=35, le=42)
    fever_sustained_hours: int = Field(default=24, gt=0)
    diarrhoea_same_day_stools: int = Field(default=7, gt=0)
    # Capsules of one daily dose ([dose] capsules): a report of taking more is extra_capsules.
    daily_capsules: int = Field(default=3, gt=0)
    criteria: Criteria
    negations: LocalizedWords = LocalizedWords()
    sae_words: LocalizedWords = LocalizedWords()
    # "Am I on the real drug?": answered with a neutral script and logged, never guessed at.
    allocation_questions: LocalizedWords = LocalizedWords()


class AckTimeouts(_Strict):
    emergency: int = Field(default=15, gt=0)
    same_day: int = Field(default=120, gt=0)

    def for_tier(self, tier: Tier) -> int:
        """Minutes without acknowledgement before the next escalation step."""
        if tier is Tier.ROUTINE:
            raise ValueError("routine reports are not paged")
        return self.emergency if tier is Tier.EMERGENCY else self.same_day


class RotaRule(_Strict):
    """A default on-call rule for sites without a rota of their own (`engage oncall set`)."""

    who: Literal["coordinator", "investigator", "pi"]
    days: str = "all"  # weekdays, weekend, all, mon-fri, sat,sun
    hours: str = "00:00-00:00"  # local; an end at or before the start runs overnight

    @model_validator(mode="after")
    def _readable(self) -> RotaRule:
        from trial.oncall import RotaError, parse_days, parse_hours

        try:
            parse_days(self.days)
            parse_hours(self.hours)
        except RotaError as exc:
            raise ValueError(str(exc)) from None
        return self


class Escalation(_Strict):
    chain: list[Literal["coordinator", "investigator", "pi"]] = Field(min_length=1)
    ack_timeout_minutes: AckTimeouts = AckTimeouts()
    # Once the ladder has reached everyone, how often everyone is paged again.
    repeat_minutes: AckTimeouts = AckTimeouts(emergency=30, same_day=120)
    # Pages of the chain's top before the study admins and the medical monitor are added.
    top_pages: int = Field(default=2, gt=0)
    sae_report_hours: int = Field(default=24, gt=0)
    # SAE deadline reminders, hours before the deadline (0: at the deadline).
    sae_reminder_hours: list[int] = Field(default_factory=lambda: [4, 0])
    oncall: list[RotaRule] = Field(default_factory=list)
    holidays: list[date] = Field(default_factory=list)  # local dates counted as Sundays

    @field_validator("sae_reminder_hours")
    @classmethod
    def _reminders(cls, hours: list[int]) -> list[int]:
        if any(h < 0 for h in hours):
            raise ValueError("reminders go before or at the deadline (hours >= 0)")
        return sorted(set(hours), reverse=True)


class Digest(_Strict):
    time: ClockTime

    _clock = field_validator("time", mode="before")(_parse_clock)


class SiteText(_Strict):
    sms_name: Localized
    # The SMS numbers patients of this site write to (E.164), when each site has its own: an
    # urgent text from an unregistered phone to one of them alerts this site only.
    sms_numbers: list[str] = Field(default_factory=list)
    # Where the signature goes: at the end, after the choice line (as Chinese carriers require
    # by default), or at the start in 【】 where the site's carrier registration says so.
    sms_name_at: Literal["end", "start"] = "end"
    # When and where the site's visits take place: visit notices say so when both are given.
    visit_time: str = ""  # e.g. "8:00", as patients read it
    visit_place: Localized | None = None  # e.g. 门诊楼3层 / Outpatient building, 3rd floor
    # The phone number patients call, printed in every SMS of a site in `sms.one_way_sites`
    # (where no reply can come back) with "紧急请拨120" / "In an emergency call 120".
    phone: str = ""


class Protocol(_Strict):
    """A whole protocol file."""

    study: Study
    dose: Dose
    phases: list[Phase] = Field(min_length=1)
    reminders: Reminders
    quiet_hours: QuietHours
    sms: Sms
    visits: Visits
    triage: Triage
    escalation: Escalation
    digest: Digest
    sites: dict[str, SiteText] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> Protocol:
        for i, phase in enumerate(self.phases):
            if phase.dose_label not in self.dose.label:
                raise ValueError(f"phases.{i}.dose_label: no dose.label.{phase.dose_label}")
        if self.phases[0].start_week != 0:
            raise ValueError("phases: the first phase must start at week 0")
        for before, after in zip(self.phases, self.phases[1:], strict=False):
            if after.start_week != before.end_week:
                raise ValueError(f"phases: {after.name} must start when {before.name} ends")
        if self.phases[-1].end_week != self.study.end_week:
            raise ValueError("phases: the last phase must end at study.end_week")
        if self.triage.daily_capsules != self.dose.capsules:
            raise ValueError("triage.daily_capsules: must equal dose.capsules")
        return self

    def phase_at_week(self, week: float) -> Phase:
        """The phase a patient is in, `week` weeks after baseline."""
        for phase in self.phases:
            if phase.start_week <= week < phase.end_week:
                return phase
        return self.phases[-1]


class ProtocolError(Exception):
    """A protocol file that cannot be used; `problems` lists each field path and reason."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: " + "; ".join(problems))


def bundled_path() -> Path:
    """Path of the bundled SIRIUS protocol file."""
    return Path(str(resources.files("trial") / "protocols" / "sirius.toml"))


def parse_protocol(text: str, source: str = "<protocol>") -> Protocol:
    """Validate protocol TOML text; raise ProtocolError naming every bad field."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ProtocolError(source, [f"not valid TOML: {exc}"]) from exc
    try:
        return Protocol.model_validate(raw)
    except ValidationError as exc:
        raise ProtocolError(source, [_problem(error, raw) for error in exc.errors()]) from exc


# Keys a reader may guess wrong, and what the format allows there instead.
UNKNOWN_KEY_HINTS = {
    "escalation.ack_timeout_minutes": "unknown tier (timeouts are for emergency and same_day)",
}


def _problem(error: ErrorDetails, raw: object) -> str:
    """One validation error as `field.path: reason`, naming the visit for visit-table errors."""
    loc = error["loc"]
    path = ".".join(str(part) for part in loc) or "(file)"
    if loc[:2] == ("visits", "table") and len(loc) > 2 and isinstance(loc[2], int):
        try:
            name = raw["visits"]["table"][loc[2]]["name"]  # type: ignore[index]
            path = path.replace(f"table.{loc[2]}", f"table.{loc[2]} ({name})", 1)
        except (KeyError, IndexError, TypeError):
            pass
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        parent = ".".join(str(part) for part in loc[:-1])
        message = UNKNOWN_KEY_HINTS.get(parent, "unknown field")
    return f"{path}: {message}"


def load_protocol(path: Path | None = None) -> Protocol:
    """Load and validate a protocol file (the bundled SIRIUS one by default)."""
    path = path or bundled_path()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ProtocolError(str(path), [f"cannot read: {exc.strerror}"]) from exc
    return parse_protocol(text, str(path))

"""Validation of enrolment data: subject ids, phone numbers (E.164), time zones, languages."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, time
from typing import TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers

from trial.protocol import LANGUAGES, ROLES, QuietHours

SUBJECT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")
SITE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")

T = TypeVar("T")


class EnrolmentError(ValueError):
    """One invalid field: `field` names it, the message says why."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.reason = message


def subject_id(value: str) -> str:
    """A subject id: letters, digits, - and _, at most 32."""
    value = value.strip()
    if not SUBJECT_ID.match(value):
        raise EnrolmentError("subject_id", f"{value!r} is not a valid subject id")
    return value


def site_id(value: str) -> str:
    """A site code: letters, digits, - and _, at most 32."""
    value = value.strip()
    if not SITE_ID.match(value):
        raise EnrolmentError("site", f"{value!r} is not a valid site code")
    return value


def phone(value: str, field: str = "phone") -> str:
    """A phone number in E.164 (with the country code, e.g. +8613812345678)."""
    try:
        parsed = phonenumbers.parse(value.strip(), None)
    except phonenumbers.NumberParseException:
        raise EnrolmentError(field, f"{value!r} is not an international number (+country...)")\
            from None
    if not phonenumbers.is_valid_number(parsed):
        raise EnrolmentError(field, f"{value!r} is not a valid phone number")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def timezone(value: str, field: str = "tz") -> str:
    """An IANA time zone name such as Asia/Shanghai."""
    value = value.strip()
    try:
        if not value or value.startswith("/"):
            raise ValueError
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise EnrolmentError(field, f"{value!r} is not a known time zone") from None
    return value


def language(value: str) -> str:
    """A catalogue language (zh or en)."""
    value = value.strip().lower()
    if value in ("zh_cn", "zh-cn", "cn"):
        value = "zh"
    if value not in LANGUAGES:
        raise EnrolmentError("language", f"{value!r} is not one of {', '.join(LANGUAGES)}")
    return value


def role(value: str) -> str:
    """A staff role."""
    value = value.strip().lower()
    if value not in ROLES:
        raise EnrolmentError("role", f"{value!r} is not one of {', '.join(ROLES)}")
    return value


def dose_time(value: str) -> str:
    """A local time of day HH:MM."""
    match = re.fullmatch(r"(\d{1,2}):(\d{2})", value.strip())
    if not match or int(match[1]) > 23 or int(match[2]) > 59:
        raise EnrolmentError("dose_time", f"{value!r} is not a time HH:MM")
    return f"{int(match[1]):02d}:{match[2]}"


def baseline(value: str) -> date:
    """A baseline date YYYY-MM-DD."""
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise EnrolmentError("baseline", f"{value!r} is not a date YYYY-MM-DD") from None


def clock_time(value: str) -> time:
    """A patient's dose time as a time object."""
    hour, minute = dose_time(value).split(":")
    return time(int(hour), int(minute))


@dataclass(frozen=True)
class Enrolment:
    """A validated enrolment request."""

    subject_id: str
    site_id: str
    baseline: date
    dose_time: str
    language: str
    phone: str | None
    tz: str | None  # None: the site's time zone


def validate_enrolment(*, subject: str, site: str, baseline_date: str, dose_at: str, lang: str,
                       phone_number: str | None = None, tz: str | None = None) -> Enrolment:
    """Validate every field, raising EnrolmentError for the first bad one."""
    enrolment, problems = check_enrolment(subject=subject, site=site, baseline_date=baseline_date,
                                          dose_at=dose_at, lang=lang, phone_number=phone_number,
                                          tz=tz)
    if enrolment is None:
        raise problems[0]
    return enrolment


def check_enrolment(*, subject: str, site: str, baseline_date: str, dose_at: str, lang: str,
                    phone_number: str | None = None, tz: str | None = None,
                    ) -> tuple[Enrolment | None, list[EnrolmentError]]:
    """Validate every field; return the enrolment, or None and every bad field (not just one)."""
    problems: list[EnrolmentError] = []

    def checked(rule: Callable[[str], T], value: str) -> T | None:
        try:
            return rule(value)
        except EnrolmentError as exc:
            problems.append(exc)
            return None

    subject_ok = checked(subject_id, subject)
    site_ok = checked(site_id, site)
    baseline_ok = checked(baseline, baseline_date)
    dose_ok = checked(dose_time, dose_at)
    language_ok = checked(language, lang)
    phone_ok = checked(phone, phone_number) if phone_number and phone_number.strip() else None
    tz_ok = checked(timezone, tz) if tz and tz.strip() else None
    if (problems or subject_ok is None or site_ok is None or baseline_ok is None
            or dose_ok is None or language_ok is None):
        return None, problems
    return Enrolment(subject_id=subject_ok, site_id=site_ok, baseline=baseline_ok,
                     dose_time=dose_ok, language=language_ok, phone=phone_ok, tz=tz_ok), []


def dose_time_outside_quiet_hours(value: str, quiet_hours: QuietHours) -> str:
    """A dose time the reminder can honour: routine messages never go out in quiet hours."""
    moment = clock_time(value)
    if quiet_hours.contains(moment):
        raise EnrolmentError(
            "dose_time", f"{value} falls in the protocol's quiet hours "
            f"({quiet_hours.start:%H:%M}-{quiet_hours.end:%H:%M}); choose a time outside them")
    return value

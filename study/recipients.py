"""Where a message to a patient or staff member goes: which channel, which address.

Telegram and SMS addresses are columns of the person's row; every other channel (WeChat for
patients, WeCom for staff) is a `ContactPoint` loaded with the row, so routing stays a plain
function of the row and knows no channel by name beyond those two."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import ColumnElement

from storage.models import ContactPoint, Patient, Staff
from trial import delivery

# Channels whose address is a column of the row; any other channel's is a contact point.
COLUMN_CHANNELS = ("telegram", "sms", "sandbox")


@dataclass(frozen=True)
class Route:
    channel: str  # telegram|sms|sandbox, or a contact point's channel (wechat, wecom)
    address: str


def receives_routine_sql() -> tuple[ColumnElement[bool], ColumnElement[bool]]:
    """SQL: `trial.delivery.receives_routine` of a patient row (status and opted-out, the
    leading columns of ix_patients_planning and ix_patients_by_baseline)."""
    return Patient.status == delivery.ROUTINE_STATUS, Patient.opted_out.is_(False)


def patient_route(patient: Patient, *, safety: bool = False) -> Route | None:
    """Telegram when linked and reachable, else a reachable contact point (WeChat), else SMS;
    None when the patient cannot be messaged.

    Opted-out, paused and withdrawn patients get nothing routine; a safety message still goes
    (a reply to the patient's own report must reach them) by any reachable channel.
    """
    if not safety and not delivery.receives_routine(patient.status, patient.opted_out):
        return None
    if reachable(patient, "telegram"):
        return Route("telegram", str(patient.telegram_id))
    for point in contact_points(patient):
        if point.reachable:
            return Route(point.channel, point.address)
    if reachable(patient, "sms"):
        return Route("sms", str(patient.phone))
    return None


def contact_points(owner: Patient | Staff) -> Sequence[ContactPoint]:
    """The owner's contact points as loaded with the row (a row created in this session and
    never loaded has none: nobody bound one to it but `study.contacts.bind`, which adds it)."""
    return vars(owner).get("contact_points") or ()


def contact_point(owner: Patient | Staff, channel: str) -> ContactPoint | None:
    """The owner's address on a contact-point channel, reachable or not."""
    return next((p for p in contact_points(owner) if p.channel == channel), None)


def reachable(patient: Patient, channel: str) -> bool:
    """Whether a patient can get messages on a channel at all: linked or with a phone, not
    marked unreachable there, and for SMS not opted out (STOP is an SMS carrier's rule)."""
    if channel == "telegram":
        return patient.telegram_id is not None and patient.telegram_reachable
    if channel == "sms":
        return bool(patient.phone) and patient.sms_reachable and not patient.opted_out
    if channel in COLUMN_CHANNELS:
        return True
    point = contact_point(patient, channel)
    return point is not None and point.reachable


def staff_route(staff: Staff) -> list[Route]:
    """Every channel a staff member is paged on (Telegram first, then their reachable contact
    points such as WeCom, SMS where configured)."""
    routes = []
    if staff.telegram_id is not None and staff.telegram_reachable:
        routes.append(Route("telegram", str(staff.telegram_id)))
    routes.extend(Route(p.channel, p.address) for p in contact_points(staff)
                  if p.reachable)
    if staff.phone:
        routes.append(Route("sms", staff.phone))
    return routes

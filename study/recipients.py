"""Where a message to a patient or staff member goes: which channel, which address."""

from __future__ import annotations

from dataclasses import dataclass

from storage.models import Patient, Staff


@dataclass(frozen=True)
class Route:
    channel: str  # telegram|sms|sandbox
    address: str


def patient_route(patient: Patient, *, safety: bool = False) -> Route | None:
    """Telegram when linked and reachable, else SMS; None when the patient cannot be messaged.

    Opted-out, paused and withdrawn patients get nothing routine; a safety message still goes
    (a reply to the patient's own report must reach them) by any reachable channel.
    """
    if not safety and (patient.opted_out or patient.status != "active"):
        return None
    if reachable(patient, "telegram"):
        return Route("telegram", str(patient.telegram_id))
    if reachable(patient, "sms"):
        return Route("sms", str(patient.phone))
    return None


def reachable(patient: Patient, channel: str) -> bool:
    """Whether a patient can get messages on a channel at all: linked or with a phone, not
    marked unreachable there, and for SMS not opted out (STOP is an SMS carrier's rule)."""
    if channel == "telegram":
        return patient.telegram_id is not None and patient.telegram_reachable
    if channel == "sms":
        return bool(patient.phone) and patient.sms_reachable and not patient.opted_out
    return True


def staff_route(staff: Staff) -> list[Route]:
    """Every channel a staff member is paged on (Telegram first, SMS where configured)."""
    routes = []
    if staff.telegram_id is not None and staff.telegram_reachable:
        routes.append(Route("telegram", str(staff.telegram_id)))
    if staff.phone:
        routes.append(Route("sms", staff.phone))
    return routes

"""One home for an outgoing message: what to say (a `Reply`: a catalogue message with its
placeholders and `Choice`s, or a `Rendered` text assembled elsewhere), to whom (a `Recipient`:
channel, address, language, who it is), and queuing it in the outbox.

`queue` renders the catalogue text and the choices in the reader's language (the one fallback
rule, `messages.catalogue.reader_language`) and inserts the row; `plan` does the same without
the insert, for batches (`queue_many`: one statement for a day's reminders). Every outgoing
message is queued here: nothing else calls `storage.outbox.enqueue`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from messages import catalogue
from messages.channel import Choice
from storage import outbox
from storage.models import OutboundMessage, Patient, Staff
from study.recipients import Route, patient_route
from study.replies import Reply

__all__ = ["Choice", "Recipient", "Rendered", "Reply", "plan", "queue", "queue_copy",
           "queue_many", "queue_planned", "render_choices"]


@dataclass(frozen=True)
class Rendered:
    """A message whose text is assembled already (a visit notice, a digest page, a chart's
    caption): its catalogue id and the version of the wording that went out."""

    body: str
    template_id: str
    version: str
    choices: tuple[Choice, ...] = ()
    safety: bool = False


@dataclass(frozen=True)
class Recipient:
    """Who a message goes to and where: a channel and address, the reader's language (None or
    unsupported: the fallback), and the patient or staff member it is for (if known)."""

    channel: str
    address: str
    language: str | None = None
    patient_id: int | None = None
    staff_id: int | None = None

    @property
    def reads(self) -> str:
        """The language the message is rendered in."""
        return catalogue.reader_language(self.language)

    @classmethod
    def patient(cls, patient: Patient, *, safety: bool = False,
                route: Route | None = None) -> Recipient | None:
        """A patient by `route`, else by their current route for the lane (None: no route)."""
        route = route or patient_route(patient, safety=safety)
        if route is None:
            return None
        return cls(route.channel, route.address, patient.language, patient_id=patient.id)

    @classmethod
    def staff(cls, staff: Staff, route: Route) -> Recipient:
        """A staff member by one of their routes."""
        return cls(route.channel, route.address, staff.language, staff_id=staff.id)


def _label(label: str, language: str) -> str:
    # A label is a catalogue id (language-neutral) or text already rendered.
    if "." in label and " " not in label:
        with contextlib.suppress(catalogue.MissingMessageError):
            return catalogue.render(label, language)
    return label


def render_choices(choices: Iterable[Choice], language: str) -> list[dict[str, str]]:
    """Choices as the outbox stores them, labels in `language`."""
    return [{"label": _label(c.label, language), "action": c.action, "sms_word": c.sms_word}
            for c in choices]


def plan(recipient: Recipient, reply: Reply | Rendered, *, key: str, now: datetime,
         due_at: datetime | None = None, lane: str | None = None, image: bytes | None = None,
         dose_id: int | None = None, alert_id: int | None = None,
         visit_id: int | None = None) -> outbox.Planned:
    """The outbox row of one message (not inserted): its text and choices rendered in the
    reader's language; the lane is the reply's (safety or routine) unless given."""
    language = recipient.reads
    if isinstance(reply, Rendered):
        template_id, version, body = reply.template_id, reply.version, reply.body
    else:
        template = catalogue.template(reply.message_id, language)
        template_id, version = reply.message_id, template.version
        body = template.render(**reply.params)
    if lane is None:
        lane = outbox.SAFETY if reply.safety else outbox.ROUTINE
    return outbox.Planned(
        key, recipient.channel, recipient.address, template_id, version, language, body,
        due_at or now, lane, render_choices(reply.choices, language) if reply.choices else None,
        image, recipient.patient_id, recipient.staff_id, dose_id, alert_id, visit_id)


async def queue(session: AsyncSession, recipient: Recipient, reply: Reply | Rendered, *,
                key: str, now: datetime, due_at: datetime | None = None, lane: str | None = None,
                image: bytes | None = None, dose_id: int | None = None,
                alert_id: int | None = None, visit_id: int | None = None) -> int | None:
    """Queue one message unless one with the same key exists; its row id, or None if the key
    was queued before."""
    return await queue_planned(session, plan(
        recipient, reply, key=key, now=now, due_at=due_at, lane=lane, image=image,
        dose_id=dose_id, alert_id=alert_id, visit_id=visit_id), now=now)


async def queue_planned(session: AsyncSession, planned: outbox.Planned, *,
                        now: datetime) -> int | None:
    """Queue one planned row (`plan`); its id, or None if its key was queued before."""
    p = planned
    return await outbox.enqueue(
        session, key=p.key, channel=p.channel, address=p.address, template_id=p.template_id,
        template_version=p.template_version, language=p.language, body=p.body,
        due_at=p.due_at, now=now, lane=p.lane, choices=p.choices, image=p.image,
        patient_id=p.patient_id, staff_id=p.staff_id, dose_id=p.dose_id, alert_id=p.alert_id,
        visit_id=p.visit_id, kind=p.kind)


async def queue_many(session: AsyncSession, planned: Sequence[outbox.Planned], *,
                     now: datetime) -> list[int]:
    """Queue planned rows in one statement; the ids of those inserted (a key queued before is
    not queued again)."""
    return await outbox.enqueue_many(session, planned, now=now)


async def queue_copy(session: AsyncSession, row: OutboundMessage, route: Route, *, key: str,
                     now: datetime) -> int | None:
    """Queue a message again, word for word, by another route (a safety message a channel
    refused); its id, or None if that copy was queued before."""
    return await queue_planned(session, outbox.Planned(
        key, route.channel, route.address, row.template_id, row.template_version, row.language,
        row.body, now, row.lane, row.choices, row.image, row.patient_id, row.staff_id,
        row.dose_id, row.alert_id, row.visit_id, row.kind), now=now)

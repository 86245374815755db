"""One home for an outgoing message: what to say (a `Reply`: a catalogue message with its
placeholders and `Choice`s, or a `Rendered` text assembled elsewhere), to whom (a `Recipient`:
channel, address, language, who it is), and queuing it in the outbox.

`queue` renders the catalogue text and the choices in the reader's language (the one fallback
rule, `messages.catalogue.reader_language`) and inserts the row; `plan` does the same without
the insert, for batches (`queue_many`: one statement for a day's reminders). Every outgoing
message is queued here: nothing else calls `storage.outbox.enqueue`.

The whole text is assembled here too, once, in its channel's form (`in_channel_form`): an SMS
gets its choice line (`回复：1 已服　2 未服…`) and, to a patient, the site's signature (or, for a
site on a one-way route, its phone and 120 instead of any invitation to reply), when it is
queued. The outbox body is exactly what the provider receives; the dispatcher and the adapters
add nothing. The text before that form is kept beside it (`plain_text`), so a message rerouted
or copied to another channel is rendered again for that channel (`reroute`, `queue_copy`).
Rows queued before the body held the whole SMS are not read back in the old form: no
deployment held such rows (the schema's first migration is still being edited in place).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from messages import catalogue, sms
from messages.channel import Choice
from storage import outbox
from storage.models import OutboundMessage, Patient, Site, Staff
from study.recipients import Route, patient_route
from study.replies import Reply
from trial import delivery
from trial.protocol import Protocol

log = logging.getLogger(__name__)

SMS = "sms"

__all__ = ["Choice", "Recipient", "Rendered", "Reply", "in_channel_form", "plan", "queue",
           "queue_copy", "queue_many", "queue_planned", "render_choices", "reroute",
           "site_signature"]


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


def site_signature(protocol: Protocol, site: Site | None, language: str) -> str:
    """The name a patient's SMS is signed with: patients know an SMS from us by it (every
    patient SMS, whatever queued it or rerouted it from another channel); "" without a site."""
    if site is None:
        return ""
    return sms.signature_for(protocol, site.id, site.name, language)


def in_channel_form(channel: str, text: str, choices: Sequence[Mapping[str, str]] | None,
                    language: str, signature: str = "") -> str:
    """The whole text as `channel` sends it. By SMS: the text, its choice line in `language`
    (the stored choices; one without an SMS word is a Telegram-only button) and `signature` at
    the end, or at the start where the site signs first (`messages.sms.render`). Every other
    channel gets the text as it is (its buttons travel beside it)."""
    if channel != SMS:
        return text
    options = [Choice(str(c.get("label", "")), str(c.get("action", "")),
                      str(c.get("sms_word", ""))) for c in choices or ()]
    return sms.render(text, options, language or catalogue.language_of(text), signature)


def reroute(row: OutboundMessage, route: delivery.Address, *, signature: str = "") -> None:
    """Move a claimed row to another route, its body rendered again for that channel from the
    text before its old channel's form (the delivery policy's reroute: a patient unreachable
    where the message was queued). `signature`: the patient's site's, for an SMS."""
    text = row.plain_text if row.plain_text is not None else row.body
    body = in_channel_form(route.channel, text, row.choices, row.language, signature)
    row.channel, row.address = route.channel, route.address
    row.body, row.plain_text = body, (text if body != text else None)


async def _signatures(session: AsyncSession, protocol: Protocol | None,
                      planned: Sequence[outbox.Planned]) -> dict[tuple[int, str], str]:
    """The signature of each (patient, language) among planned patient SMS."""
    wanted = {(p.patient_id, p.language) for p in planned if p.patient_id is not None}
    if not wanted:
        return {}
    if protocol is None:
        log.warning("patient SMS queued without the protocol: sent unsigned")
        return {}
    ids = sorted({patient_id for patient_id, _ in wanted})
    found = await session.execute(select(Patient.id, Site).join(Site, Site.id == Patient.site_id)
                                  .where(Patient.id.in_(ids)))
    sites: dict[Any, Site] = {row[0]: row[1] for row in found}
    return {(patient_id, language): site_signature(protocol, sites.get(patient_id), language)
            for patient_id, language in wanted}


async def _in_channel_forms(session: AsyncSession, planned: Sequence[outbox.Planned],
                            protocol: Protocol | None) -> list[outbox.Planned]:
    """Planned rows with their bodies in their channels' form (the text kept as plain_text
    where the two differ); a row already in its form is left as it is."""
    texts = [p for p in planned if p.channel == SMS and p.plain_text is None]
    if not texts:
        return list(planned)
    names = await _signatures(session, protocol, texts)
    formed = []
    for p in planned:
        if p.channel == SMS and p.plain_text is None:
            name = names.get((p.patient_id, p.language), "") if p.patient_id else ""
            body = in_channel_form(p.channel, p.body, p.choices, p.language, name)
            if body != p.body:
                p = replace(p, body=body, plain_text=p.body)
        formed.append(p)
    return formed


async def queue(session: AsyncSession, recipient: Recipient, reply: Reply | Rendered, *,
                key: str, now: datetime, due_at: datetime | None = None, lane: str | None = None,
                image: bytes | None = None, dose_id: int | None = None,
                alert_id: int | None = None, visit_id: int | None = None,
                protocol: Protocol | None = None) -> int | None:
    """Queue one message unless one with the same key exists; its row id, or None if the key
    was queued before. `protocol`: for a patient's SMS, its site's signature (needed there)."""
    return await queue_planned(session, plan(
        recipient, reply, key=key, now=now, due_at=due_at, lane=lane, image=image,
        dose_id=dose_id, alert_id=alert_id, visit_id=visit_id), now=now, protocol=protocol)


async def queue_planned(session: AsyncSession, planned: outbox.Planned, *,
                        now: datetime, protocol: Protocol | None = None) -> int | None:
    """Queue one planned row (`plan`), its body in its channel's form; its id, or None if its
    key was queued before."""
    [p] = await _in_channel_forms(session, [planned], protocol)
    return await outbox.enqueue(
        session, key=p.key, channel=p.channel, address=p.address, template_id=p.template_id,
        template_version=p.template_version, language=p.language, body=p.body,
        due_at=p.due_at, now=now, lane=p.lane, choices=p.choices, image=p.image,
        patient_id=p.patient_id, staff_id=p.staff_id, dose_id=p.dose_id, alert_id=p.alert_id,
        visit_id=p.visit_id, kind=p.kind, plain_text=p.plain_text)


async def queue_many(session: AsyncSession, planned: Sequence[outbox.Planned], *,
                     now: datetime, protocol: Protocol | None = None) -> list[int]:
    """Queue planned rows in one statement, each body in its channel's form; the ids of those
    inserted (a key queued before is not queued again)."""
    return await outbox.enqueue_many(
        session, await _in_channel_forms(session, planned, protocol), now=now)


async def queue_copy(session: AsyncSession, row: OutboundMessage, route: Route, *, key: str,
                     now: datetime, protocol: Protocol | None = None) -> int | None:
    """Queue a message again, word for word, by another route (a safety message a channel
    refused), in that channel's form; its id, or None if that copy was queued before."""
    text = row.plain_text if row.plain_text is not None else row.body
    return await queue_planned(session, outbox.Planned(
        key, route.channel, route.address, row.template_id, row.template_version, row.language,
        text, now, row.lane, row.choices, row.image, row.patient_id, row.staff_id,
        row.dose_id, row.alert_id, row.visit_id, row.kind), now=now, protocol=protocol)

"""Tick steps of the safety loop: re-escalate unacknowledged alerts; close timed-out
questionnaires; offer the weekly check-in.

Escalation is one transaction per alert step (see study.alerts), so a restart between two steps
neither skips nor repeats one, and two ticks at the same instant page once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime

from scheduler.steps import NOW, TickStep
from storage.db import Database
from study import alerts, checkins, outgoing, questionnaire
from trial.protocol import Protocol

BATCH = 50


async def _in_batches(db: Database, protocol: Protocol, now: datetime,
                      work: Callable[..., Awaitable[int]]) -> int:
    """Run `work` over what is due, BATCH alerts per transaction, until a batch is short."""
    total = 0
    while True:
        async with db.write() as session:
            done = await work(session, protocol, now=now, limit=BATCH)
        total += done
        if done < BATCH:
            return total


async def escalate(db: Database, protocol: Protocol, now: datetime) -> int:
    """Page the next level of every alert whose acknowledgement timeout has passed."""
    return await _in_batches(db, protocol, now, alerts.escalate_due)


async def sae_reminders(db: Database, protocol: Protocol, now: datetime) -> int:
    """Remind the site of every SAE candidate's sponsor-report deadline (deadline - 4 h and
    at the deadline, by the protocol) until "reported to sponsor" is recorded."""
    return await _in_batches(db, protocol, now, alerts.send_sae_reminders)


async def close_questionnaires(db: Database, protocol: Protocol, now: datetime) -> int:
    """Close timed-out questionnaires: report what was answered, tell the patient politely."""
    async with db.write() as session:
        closed = await questionnaire.expire_due(session, protocol, now=now)
        for patient, replies in closed:
            for n, reply in enumerate(replies):
                recipient = outgoing.Recipient.patient(patient, safety=reply.safety)
                if recipient is not None:
                    await outgoing.queue(
                        session, recipient, reply, now=now, protocol=protocol,
                        key=f"questionnaire:{patient.id}:{now.isoformat()}:{n}")
    return len(closed)


async def offer_checkins(db: Database, protocol: Protocol, now: datetime) -> int:
    """The weekly check-in offers (study.checkins); most of the week, no transaction at all."""
    if not checkins.may_be_checkin_time(protocol.reminders, now):
        return 0
    async with db.write() as session:
        return await checkins.offer_checkins(session, protocol, now)


STEPS = (
    TickStep("escalation", escalate, when=alerts.escalation_due(NOW)),
    TickStep("sae_reminders", sae_reminders, when=alerts.sae_reminder_due(NOW)),
    TickStep("questionnaire_timeouts", close_questionnaires,
             when=questionnaire.timeout_due(NOW)),
    TickStep("checkins", offer_checkins, probe=checkins.checkins_due),
)

"""Escalation policy: who is paged at each step of an unacknowledged alert, and when. Pure.

The ladder is cumulative. Its first rung is whoever is on call (trial.oncall), else the chain's
first staffed level; each next rung adds the next staffed level of the protocol's chain and
pages again everyone on the rungs before. Once the chain's top has been paged `top_pages`
times, the study admins and the medical monitor are added; that last rung then repeats every
`repeat_minutes`. A group nobody can be paged in is skipped (and named).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from trial.protocol import Escalation, Tier

ADMINS = "admin"
MEDICAL_MONITOR = "medical_monitor"
STUDY_GROUPS = (ADMINS, MEDICAL_MONITOR)


@dataclass(frozen=True)
class Rung:
    """One step of the ladder: every group it pages, and the group it adds."""

    groups: tuple[str, ...]  # roles, "staff:ID" (an on-call person), admin, medical_monitor
    added: tuple[str, ...]


def ladder(chain: Sequence[str], staffed: Collection[str], *, first: str | None = None,
           top_pages: int = 2) -> tuple[list[Rung], tuple[str, ...]]:
    """The rungs for a site's staffed groups, and the chain levels skipped for nobody.

    `staffed` names the groups with somebody who can be paged (site roles, `staff:ID`, and the
    study groups admin and medical_monitor). No rung at all: nobody on the site can be paged.
    """
    groups: list[str] = []
    rungs: list[Rung] = []
    skipped = tuple(role for role in chain if role not in staffed)
    if first is not None and first in staffed:
        groups.append(first)
        rungs.append(Rung(tuple(groups), (first,)))
    for role in chain:
        if role in staffed and role not in groups:
            groups.append(role)
            rungs.append(Rung(tuple(groups), (role,)))
    if not rungs:
        return [], skipped
    top = next((role for role in reversed(chain) if role in staffed), groups[-1])
    while sum(top in rung.groups for rung in rungs) < top_pages:
        rungs.append(Rung(tuple(groups), ()))
    extra = tuple(g for g in STUDY_GROUPS if g in staffed)
    if extra:
        rungs.append(Rung((*groups, *extra), extra))
    return rungs, skipped


def rung_at(rungs: Sequence[Rung], step: int) -> Rung:
    """The rung of page step `step` (0: the first page); past the end the last repeats."""
    return rungs[min(step, len(rungs) - 1)]


def next_escalation(policy: Escalation, tier: Tier, paged_at: datetime, *,
                    top_reached: bool = False) -> datetime:
    """When to page again if nobody acknowledges a page sent at `paged_at`: the ack timeout
    while the ladder climbs, the repeat interval once its last rung has been paged."""
    minutes = (policy.repeat_minutes if top_reached else policy.ack_timeout_minutes)
    return paged_at + timedelta(minutes=minutes.for_tier(tier))


def sae_deadline(policy: Escalation, received_at: datetime) -> datetime:
    """The sponsor-report deadline of a possible serious adverse event (from receipt, UTC)."""
    return received_at + timedelta(hours=policy.sae_report_hours)


def sae_reminder_after(policy: Escalation, deadline: datetime,
                       after: datetime | None) -> datetime | None:
    """The first SAE reminder instant strictly after `after` (None: from the start); None
    once the deadline's reminder is past."""
    for hours in policy.sae_reminder_hours:  # largest first
        at = deadline - timedelta(hours=hours)
        if after is None or at > after:
            return at
    return None

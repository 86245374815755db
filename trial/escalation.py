"""Escalation policy: who is paged next for an unacknowledged alert, and when. Pure."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from trial.protocol import Escalation, Tier


@dataclass(frozen=True)
class PagePlan:
    """One escalation step: the chain level to page, and the levels passed over for no staff."""

    level: int | None  # None: nobody on the chain can be paged
    role: str | None
    skipped: tuple[str, ...] = ()


def plan_page(chain: Sequence[str], staffed: Collection[str], previous: int | None) -> PagePlan:
    """The level to page: the next staffed level up the chain, repeating at the top.

    `previous` is the level paged last (None for the first page). A level with nobody who can
    be paged is skipped (and named); past the top, the highest staffed level is paged again.
    """
    top = len(chain) - 1
    start = 0 if previous is None else min(previous + 1, top)
    skipped: list[str] = []
    for level in range(start, top + 1):
        if chain[level] in staffed:
            return PagePlan(level, chain[level], tuple(skipped))
        skipped.append(chain[level])
    for level in range(top, -1, -1):  # nobody above: repeat at the highest level that has staff
        if chain[level] in staffed:
            return PagePlan(level, chain[level], tuple(skipped))
    return PagePlan(None, None, tuple(skipped))


def next_escalation(policy: Escalation, tier: Tier, paged_at: datetime) -> datetime:
    """When to page again if nobody acknowledges a page sent at `paged_at`."""
    return paged_at + timedelta(minutes=policy.ack_timeout_minutes.for_tier(tier))


def sae_deadline(policy: Escalation, received_at: datetime) -> datetime:
    """The sponsor-report deadline of a possible serious adverse event (from receipt, UTC)."""
    return received_at + timedelta(hours=policy.sae_report_hours)

"""The escalation policy: next staffed level up the chain, skipping empty levels, repeating
at the top."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from trial.escalation import next_escalation, plan_page, sae_deadline
from trial.protocol import Protocol, Tier

CHAIN = ["coordinator", "investigator", "pi"]
ALL = {"coordinator", "investigator", "pi"}


def test_up_the_chain_then_repeat_at_the_top() -> None:
    levels = []
    previous = None
    for _ in range(5):
        plan = plan_page(CHAIN, ALL, previous)
        levels.append(plan.level)
        previous = plan.level
    assert levels == [0, 1, 2, 2, 2]


def test_levels_without_staff_are_skipped_and_named() -> None:
    plan = plan_page(CHAIN, {"pi"}, None)
    assert (plan.level, plan.skipped) == (2, ("coordinator", "investigator"))
    only_coordinator = plan_page(CHAIN, {"coordinator"}, 0)
    assert only_coordinator.level == 0  # nobody above: the highest staffed level again
    assert plan_page(CHAIN, set(), None).level is None


def test_timeouts_and_sae_deadline(protocol: Protocol) -> None:
    now = datetime(2026, 3, 2, tzinfo=UTC)
    assert next_escalation(protocol.escalation, Tier.EMERGENCY, now) == now + timedelta(minutes=15)
    assert next_escalation(protocol.escalation, Tier.SAME_DAY, now) == now + timedelta(hours=2)
    assert sae_deadline(protocol.escalation, now) == now + timedelta(hours=24)

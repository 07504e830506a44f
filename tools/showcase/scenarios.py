"""The scenarios, in the order they run."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tools.showcase import payments
from tools.showcase.platform import Platform


@dataclass(frozen=True)
class Scenario:
    """One flow to show: its name (for `--only`), issue, one-line title and steps."""

    name: str
    issue: int
    title: str
    run: Callable[[Platform], None]


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "decline-then-retry",
            19,
            "a declined card, then another that completes",
            payments.decline_then_retry,
        ),
        Scenario(
            "stolen-card",
            19,
            "a stolen card's decline reads as a generic decline",
            payments.stolen_card,
        ),
        Scenario(
            "dashboard-refund",
            19,
            "a refund in the provider's dashboard reaches the order",
            payments.dashboard_refund,
        ),
        Scenario(
            "dispute", 19, "a chargeback reaches the operators' dispute list", payments.dispute
        ),
        Scenario(
            "failing-refund",
            19,
            "a refund the provider fails waits for an operator",
            payments.failing_refund,
        ),
    )
}

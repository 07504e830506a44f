"""The scenarios, in the order they run."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tools.showcase import orders, payments, pricing
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
        Scenario(
            "priced-checkout",
            20,
            "a chosen shipping rate, a coupon and tax: exactly the total captured",
            pricing.priced_checkout,
        ),
        Scenario(
            "rate-expired",
            20,
            "an unknown or foreign shipping rate is refused",
            pricing.rate_expired,
        ),
        Scenario(
            "tax-down", 20, "tax service down: tax_unavailable with nothing held", pricing.tax_down
        ),
        Scenario(
            "cancel-before-pickup",
            21,
            "a cancel before pickup refunds and restocks",
            orders.cancel_before_pickup,
        ),
        Scenario(
            "cancel-after-delivery",
            21,
            "a cancel after delivery is refused",
            orders.cancel_after_delivery,
        ),
        Scenario(
            "return-discounted-line",
            21,
            "a discounted line's return refunds its share, restocks once; no more than is left",
            orders.return_discounted_line,
        ),
        Scenario(
            "refund-replayed",
            21,
            "an operator's refund replayed moves money once",
            orders.refund_replayed,
        ),
        Scenario("over-refund", 21, "a refund above the capture is refused", orders.over_refund),
    )
}

"""The fake world the stand-in activities act on: what one checkout holds in every domain.

Each checkout gets its own `World` (found by the workflow id of the activity calling): its cart,
stock reservation, coupon redemption, order, payment intent and shipment as plain fields, every
activity call in order, and a script of failures to inject. `given_back` and `completed` check on
it the same invariants the full-stack tests check on the databases and the provider's ledger.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from workflows.checkout.contract import FailureCode

# Statuses of the fake provider's intent in which an authorization (or a buyer's action) is live.
LIVE_INTENT = frozenset({"requires_action", "processing", "requires_capture"})


@dataclass(frozen=True)
class Fail:
    """Fail for good (a non-retryable error with the domain's code), changing nothing.

    With `times`, only the first `times` attempts fail that way: an operator's retry then works.
    """

    code: FailureCode
    times: int | None = None


@dataclass(frozen=True)
class Transient:
    """Fail with a retryable error on the first `times` attempts; `after_effect`: the attempt
    did its work before failing (a write that committed, then the connection dropped)."""

    times: int = 1
    after_effect: bool = False


@dataclass
class Hang:
    """Wait until cancelled, or until `release()` lets the call go on (then act normally)."""

    entered: asyncio.Event = field(default_factory=asyncio.Event)
    released: asyncio.Event = field(default_factory=asyncio.Event)

    def release(self) -> None:
        """Let the held call (and any later one) go on."""
        self.released.set()


Behaviour = Fail | Transient | Hang


@dataclass
class World:
    """What one checkout holds, as the domains and the provider would."""

    checkout_id: uuid.UUID
    # How the provider answers the authorization: "authorized", "requires_action" (3-D Secure),
    # "processing" (decided by the provider later) or "failed" (declined).
    payment: str = "authorized"
    # The buyer approved the 3-D Secure challenge (or the provider decided an async payment).
    approved: bool | None = None
    # The cart: `quantity` units at `unit_price`; a coupon takes `discount_percent` off.
    unit_price: Decimal = Decimal("19.99")
    quantity: int = 2
    discount_percent: Decimal = Decimal(10)
    cart: str = "active"  # active | locked | converted
    # held | committed | released (a committed stock is released only with `restock`)
    stock: str | None = None
    coupon: str | None = None  # held | confirmed | released
    order: str | None = None  # pending_payment | paid | fulfilling | cancelled | refunded
    total: Decimal | None = None
    intent: str | None = None  # requires_action | processing | requires_capture | captured |
    # canceled | failed
    captured: Decimal = Decimal(0)
    # The payment methods the intent was confirmed with after a decline, in order.
    confirmed: list[str] = field(default_factory=list)
    refunded: Decimal = Decimal(0)
    shipment: str | None = None  # booked | cancelled
    # The shipping rate the shipment bought (None: the cheapest, shipping free to the buyer).
    bought_rate: uuid.UUID | None = None
    # The tax service: its rate in percent, and whether it is down with TAX_ON_FAILURE=open
    # (the activity then answers zero tax, `untaxed`).
    tax_percent: Decimal = Decimal(0)
    tax_down_open: bool = False
    tax: str | None = None  # calculated | committed | reversed | untaxed
    tax_total: Decimal = Decimal(0)
    calls: list[str] = field(default_factory=list)
    attempts: Counter[str] = field(default_factory=Counter)
    records: list[Any] = field(default_factory=list)
    # When (server time) each activity's latest attempt was scheduled.
    scheduled: dict[str, datetime] = field(default_factory=dict)
    script: dict[str, Behaviour] = field(default_factory=dict)
    # A return's world (ReturnWorkflow; `checkout_id` is then the return's id): the statuses it
    # recorded, what came back, what went back to stock per order line, the refunds asked for
    # (by key) with who asked (purpose, owner), and how the provider settles each refund sent, in
    # order (then `succeeded`).
    return_moves: list[str] = field(default_factory=list)
    restocked: dict[uuid.UUID, int] = field(default_factory=dict)
    refund_requests: dict[str, Decimal] = field(default_factory=dict)
    refund_requesters: dict[str, tuple[str | None, uuid.UUID | None]] = field(default_factory=dict)
    refund_outcomes: list[str] = field(default_factory=list)

    @property
    def intent_id(self) -> str:
        """The provider's id of this checkout's payment intent."""
        return f"pi_{self.checkout_id.hex[:24]}"

    def approve(self, approved: bool = True) -> None:
        """The buyer answers the challenge (or the provider decides an async payment)."""
        self.approved = approved

    def called(self, name: str) -> int:
        """How many times an activity ran to its end (any attempt)."""
        return self.calls.count(name)

    def given_back(self) -> list[str]:
        """Violations of "nothing held, nobody charged" for a checkout that did not complete."""
        wrong = []
        if self.cart != "active":
            wrong.append(f"cart is {self.cart}")
        if self.stock in ("held", "committed"):
            wrong.append(f"stock is {self.stock}")
        if self.coupon in ("held", "confirmed"):
            wrong.append(f"coupon is {self.coupon}")
        if self.order not in (None, "cancelled", "refunded"):
            wrong.append(f"order is {self.order}")
        if self.order == "refunded" and self.captured == 0:
            wrong.append("order refunded though nothing was captured")
        if self.intent in LIVE_INTENT:
            wrong.append(f"the authorization is still live ({self.intent})")
        if self.captured != self.refunded:
            wrong.append(f"captured {self.captured} but refunded {self.refunded}")
        if self.shipment == "booked":
            wrong.append("a shipment is still booked")
        if self.tax == "committed":
            wrong.append("the tax transaction is still recorded")
        return wrong + self._charged_once()

    def completed(self, *, coupon: bool) -> list[str]:
        """Violations of "one paid order, stock taken, coupon used, shipped, cart converted"."""
        wrong = []
        if self.cart != "converted":
            wrong.append(f"cart is {self.cart}")
        if self.stock != "committed":
            wrong.append(f"stock is {self.stock}")
        if self.coupon != ("confirmed" if coupon else None):
            wrong.append(f"coupon is {self.coupon}")
        if self.order != "fulfilling":
            wrong.append(f"order is {self.order}")
        if self.shipment != "booked" or self.called("shipping.create") < 1:
            wrong.append(f"shipment is {self.shipment}")
        if self.refunded:
            wrong.append(f"refunded {self.refunded}")
        if self.tax == "calculated":
            wrong.append("the tax was calculated but never recorded")
        if self.total == 0:
            if self.intent is not None or self.captured:
                wrong.append("a zero total took a payment")
        elif self.intent != "captured" or self.captured != self.total:
            wrong.append(f"intent {self.intent}, captured {self.captured} of {self.total}")
        return wrong + self._charged_once()

    def _charged_once(self) -> list[str]:
        if self.total is not None and self.captured > self.total:
            return [f"captured {self.captured} > total {self.total}"]
        return []

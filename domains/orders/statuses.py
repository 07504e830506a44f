"""An order's lifecycle and address kinds: the orders domain's vocabulary, plain enums (no ORM)."""

from __future__ import annotations

from enum import StrEnum


class OrderStatus(StrEnum):
    """Order lifecycle (docs/reference/states.md)."""

    PENDING_PAYMENT = "pending_payment"
    PAID = "paid"
    FULFILLING = "fulfilling"
    SHIPPED = "shipped"
    DELIVERED = "delivered"
    CANCELLED = "cancelled"
    # Part of the captured money went back to the buyer (the order itself carries on).
    PARTIALLY_REFUNDED = "partially_refunded"
    REFUNDED = "refunded"


class ReturnStatus(StrEnum):
    """A return's lifecycle (docs/reference/states.md)."""

    REQUESTED = "requested"  # asked for by the buyer, waiting for a decision
    APPROVED = "approved"  # accepted: a return label is (being) bought, the parcel is awaited
    REJECTED = "rejected"  # refused, or closed unreturned, by an operator: final, units free again
    RECEIVED = "received"  # the parcel is back: restocked as asked, the refund under way
    REFUNDED = "refunded"  # the money went back (or an operator settled it by hand): final
    NEEDS_ATTENTION = "needs_attention"  # a step failed for good: an operator retries/resolves


class AddressType(StrEnum):
    """Which address of an order a row holds."""

    SHIPPING = "shipping"
    BILLING = "billing"

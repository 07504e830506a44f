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


class AddressType(StrEnum):
    """Which address of an order a row holds."""

    SHIPPING = "shipping"
    BILLING = "billing"

"""How a coupon discounts and where a redemption stands: plain enums (no ORM)."""

from __future__ import annotations

from enum import StrEnum


class DiscountType(StrEnum):
    """How a coupon's `discount_value` reads."""

    PERCENTAGE = "percentage"
    FIXED = "fixed"


class RedemptionStatus(StrEnum):
    """Lifecycle of a redemption: held by a running checkout, used, or given back."""

    HELD = "held"
    CONFIRMED = "confirmed"
    RELEASED = "released"

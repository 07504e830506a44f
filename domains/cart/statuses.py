"""A cart's lifecycle: the cart domain's vocabulary, plain enums (no ORM)."""

from __future__ import annotations

from enum import StrEnum


class CartStatus(StrEnum):
    """Lifecycle of a cart: editable, held by one checkout, turned into an order, or dropped."""

    ACTIVE = "active"
    LOCKED = "locked"
    CONVERTED = "converted"
    ABANDONED = "abandoned"

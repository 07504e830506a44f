"""Cart failures with stable codes."""

from __future__ import annotations

from kit.errors import Conflict, DomainError, NotFound


class CartNotFound(NotFound, code="cart_not_found"):
    """No such cart for this user."""


class CartLocked(Conflict, code="cart_locked"):
    """Another checkout holds the cart (or it was already turned into an order)."""


class CartReleased(Conflict, code="cart_released"):
    """The checkout already gave the cart back: a late attempt of its lock step must not take it."""


class CartEmpty(DomainError, code="cart_empty"):
    """A checkout needs at least one line."""


class CartCurrencyMismatch(DomainError, code="currency_mismatch"):
    """The variant has no price in the cart's currency."""


class QuantityOutOfRange(DomainError, code="quantity_out_of_range"):
    """A line holds 1 to 99 units."""


class ItemNotFound(NotFound, code="item_not_found"):
    """No such line in this cart."""


class TooManyLines(DomainError, code="too_many_lines"):
    """A cart holds at most 100 lines."""

"""Cart failures with stable codes."""

from __future__ import annotations

from kit.errors import Conflict, DomainError, NotFound


class CartNotFound(NotFound):
    """No such cart for this user."""

    code = "cart_not_found"


class CartLocked(Conflict):
    """Another checkout holds the cart (or it was already turned into an order)."""

    code = "cart_locked"


class CartEmpty(DomainError):
    """A checkout needs at least one line."""

    code = "cart_empty"


class CartCurrencyMismatch(DomainError):
    """The variant has no price in the cart's currency."""

    code = "currency_mismatch"


class QuantityOutOfRange(DomainError):
    """A line holds 1 to 99 units."""

    code = "quantity_out_of_range"


class ItemNotFound(NotFound):
    """No such line in this cart."""

    code = "item_not_found"


class TooManyLines(DomainError):
    """A cart holds at most 100 lines."""

    code = "too_many_lines"

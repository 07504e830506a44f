"""The cart's activities as the workflow calls them: names and payloads."""

from __future__ import annotations

import uuid

from activities.shared import ActivityName, Line, Payload, subtotal
from kit.money import Money


class LockCartInput(Payload):
    """Lock a cart for one checkout."""

    checkout_id: uuid.UUID
    cart_id: uuid.UUID
    user_id: uuid.UUID


class CartSnapshot(Payload):
    """The locked cart."""

    cart_id: uuid.UUID
    currency: str
    lines: list[Line]

    def subtotal(self) -> Money:
        """Sum of unit price times quantity, in the cart's currency."""
        return subtotal(self.currency, self.lines)


class CartRef(Payload):
    """A cart and the checkout acting on it."""

    checkout_id: uuid.UUID
    cart_id: uuid.UUID


LOCK = ActivityName("cart.lock", LockCartInput, CartSnapshot)
UNLOCK = ActivityName("cart.unlock", CartRef, bool)
CONVERT = ActivityName("cart.convert", CartRef, type(None))

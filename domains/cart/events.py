"""Events the cart domain publishes through its outbox."""

from __future__ import annotations

import uuid

from pydantic import BaseModel

AGGREGATE = "cart"


class CartCheckoutEvent(BaseModel):
    """`cart.locked`, `cart.unlocked`, `cart.converted`: the cart's relation to a checkout."""

    cart_id: uuid.UUID
    user_id: uuid.UUID
    checkout_id: uuid.UUID

"""Events the orders domain publishes through its outbox."""

from __future__ import annotations

import uuid
from decimal import Decimal

from pydantic import AliasChoices, BaseModel, Field

AGGREGATE = "order"


class OrderCreated(BaseModel):
    """`order.created`: the new `Order` row (`model_validate(row, from_attributes=True)`)."""

    order_id: uuid.UUID = Field(validation_alias=AliasChoices("order_id", "id"))
    order_number: str
    checkout_id: uuid.UUID
    user_id: uuid.UUID
    total_amount: Decimal
    currency: str


class StatusChange(BaseModel):
    """What every status change of an order, or of one of its returns, says: the order, its buyer,
    from which status to which, and why (a failure code, an actor or a policy)."""

    order_id: uuid.UUID
    order_number: str
    user_id: uuid.UUID
    from_state: str | None
    to_state: str
    reason: str | None = None


class OrderStatusChanged(StatusChange):
    """`order.<status>`: paid, fulfilling, shipped, delivered, cancelled, refunded."""

    # The order's money as the change leaves it (what a refund notice tells the buyer).
    total_amount: Decimal | None = None
    refunded_amount: Decimal | None = None
    currency: str | None = None


RETURN_AGGREGATE = "order_return"


class ReturnChanged(StatusChange):
    """`return.<status>`: requested, approved, rejected, received, refunded, needs_attention."""

    return_id: uuid.UUID
    refund_amount: Decimal
    currency: str

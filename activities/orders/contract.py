"""The orders' activities as the workflow calls them: names and payloads."""

from __future__ import annotations

import uuid
from decimal import Decimal

from pydantic import Field

from activities.shared import ActivityName, Address, Line, MoneyValue, Payload


class CreateOrderInput(Payload):
    """One order per checkout."""

    checkout_id: uuid.UUID
    user_id: uuid.UUID
    currency: str
    lines: list[Line]
    subtotal: MoneyValue
    discount: MoneyValue
    total: MoneyValue
    coupon_code: str | None
    shipping_address: Address
    billing_address: Address | None
    # The whole price (both absent in histories of checkouts started before they existed: zero).
    # `tax` is all the tax; `line_taxes` the part of it on each line, by variant.
    shipping: MoneyValue | None = None
    tax: MoneyValue | None = None
    line_taxes: dict[uuid.UUID, Decimal] = Field(default_factory=dict)


class OrderInfo(Payload):
    """The created (or found) order."""

    order_id: uuid.UUID
    order_number: str
    status: str
    total: MoneyValue


class OrderTransitionInput(Payload):
    """Move a checkout's order to another status."""

    checkout_id: uuid.UUID
    reason: str | None = None


class CancelOrderInput(Payload):
    """Cancel a checkout's order, as `refunded` when money came back."""

    checkout_id: uuid.UUID
    reason: str
    refunded: bool = False


CREATE = ActivityName("orders.create", CreateOrderInput, OrderInfo)
CANCEL = ActivityName("orders.cancel", CancelOrderInput, bool)
MARK_PAID = ActivityName("orders.mark_paid", OrderTransitionInput, OrderInfo)
MARK_FULFILLING = ActivityName("orders.mark_fulfilling", OrderTransitionInput, OrderInfo)


# --- returns (domains/orders/returns.py) ---------------------------------------------------


class ReturnLabelValue(Payload):
    """The carrier's return label, as the return records it."""

    carrier: str
    tracking_number: str
    label_url: str | None = None


class MoveReturnInput(Payload):
    """Move a return to a status (a ReturnStatus value), with the label or an operator's note
    that came with the move; a repeat changes nothing."""

    return_id: uuid.UUID
    to: str
    reason: str | None = None
    label: ReturnLabelValue | None = None
    note: str | None = None


class ReceivedLineValue(Payload):
    """Units of a return's line that came back, and how many go back to stock."""

    order_item_id: uuid.UUID
    quantity: int = Field(ge=0)
    restock: int = Field(ge=0)


class ReceiveReturnInput(Payload):
    """What came back of a return (a line not named came back whole, not restocked)."""

    return_id: uuid.UUID
    lines: list[ReceivedLineValue]
    reason: str


class ReceivedReturn(Payload):
    """What the return recorded as received, per line (a repeat answers the first record)."""

    lines: list[ReceivedLineValue]


MOVE_RETURN = ActivityName("orders.move_return", MoveReturnInput, bool)
RECEIVE_RETURN = ActivityName("orders.receive_return", ReceiveReturnInput, ReceivedReturn)

"""Orders: one per checkout, every status change recorded as a transition."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, Insert, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from domains.orders.errors import InvalidOrder, InvalidTransition, OrderNotFound
from domains.orders.events import AGGREGATE, OrderCreated, OrderStatusChanged
from domains.orders.models import (
    Order,
    OrderAddress,
    OrderItem,
    OrderStateTransition,
    order_number_seq,
)
from domains.orders.statuses import AddressType, OrderStatus
from kit.db import get_owned, insert_or_get, written
from kit.money import Money, allocate
from kit.outbox import NewEvent, write_with_events

S = OrderStatus
# Which status may follow which. Anything else is a bug or a race, refused loudly.
ALLOWED: dict[OrderStatus, frozenset[OrderStatus]] = {
    S.PENDING_PAYMENT: frozenset({S.PAID, S.CANCELLED}),
    S.PAID: frozenset({S.FULFILLING, S.SHIPPED, S.CANCELLED, S.PARTIALLY_REFUNDED, S.REFUNDED}),
    S.FULFILLING: frozenset(
        {S.SHIPPED, S.DELIVERED, S.CANCELLED, S.PARTIALLY_REFUNDED, S.REFUNDED}
    ),
    S.SHIPPED: frozenset({S.DELIVERED, S.PARTIALLY_REFUNDED, S.REFUNDED}),
    S.DELIVERED: frozenset({S.PARTIALLY_REFUNDED, S.REFUNDED}),
    # Part of the money went back (a dashboard refund): the rest may follow.
    S.PARTIALLY_REFUNDED: frozenset({S.REFUNDED}),
    S.CANCELLED: frozenset(),
    S.REFUNDED: frozenset(),
}


ORDER_NUMBER_PREFIX = "ORD-"


def _next_order_number() -> ColumnElement[str]:
    """A short number a buyer can read out on the phone (`ORD-100042`): the prefix and the
    sequence's next value, drawn by the INSERT that uses it."""
    return func.concat(ORDER_NUMBER_PREFIX, order_number_seq.next_value())


@dataclass(frozen=True)
class NewOrderLine:
    """One line of the order to create."""

    product_id: uuid.UUID
    variant_id: uuid.UUID
    sku: str
    quantity: int
    unit_price: Money
    # The tax on the line, as the tax service computed it for this order (zero without one).
    tax: Money | None = None

    @property
    def total(self) -> Money:
        """Unit price times quantity."""
        return self.unit_price * self.quantity


@dataclass(frozen=True)
class NewOrder:
    """Everything an order is created from.

    The total is the whole price: subtotal - discount + shipping + tax, where `tax` is all of it
    (the lines' and the shipping's). A spec whose parts do not add up is refused before anything
    is written.
    """

    checkout_id: uuid.UUID
    user_id: uuid.UUID
    lines: Sequence[NewOrderLine]
    subtotal: Money
    discount: Money
    total: Money
    coupon_code: str | None
    shipping_address: dict[str, Any]
    billing_address: dict[str, Any] | None
    shipping: Money | None = None
    tax: Money | None = None

    def shipping_or_zero(self) -> Money:
        """What delivery costs the buyer, before its tax."""
        return self.shipping or Money.zero(self.total.currency)

    def tax_or_zero(self) -> Money:
        """All the order's tax."""
        return self.tax or Money.zero(self.total.currency)

    def check(self) -> None:
        """Refuse a spec whose money does not add up (a bug upstream, never the buyer's)."""
        currency = self.total.currency
        lines = sum((line.total for line in self.lines), Money.zero(currency))
        line_tax = sum(
            (line.tax or Money.zero(currency) for line in self.lines), Money.zero(currency)
        )
        whole = self.subtotal - self.discount + self.shipping_or_zero() + self.tax_or_zero()
        if lines != self.subtotal or whole != self.total or line_tax > self.tax_or_zero():
            raise InvalidOrder(
                "the order's amounts do not add up",
                subtotal=str(self.subtotal),
                total=str(self.total),
            )

    def line_discounts(self) -> list[Money]:
        """Each line's share of the discount, fixed now for every later refund."""
        return allocate(self.discount, [line.total for line in self.lines])


async def create_order(session: AsyncSession, spec: NewOrder) -> Order:
    """The checkout's order, created once: a retry finds the first one (unique `checkout_id`).

    Two statements for a new order: the order (`INSERT ... ON CONFLICT DO NOTHING RETURNING`,
    its number drawn by the same statement), then its lines, addresses, first transition and
    `order.created` event together.
    """
    spec.check()
    order, created = await insert_or_get(
        session,
        Order,
        {
            "id": uuid.uuid4(),
            "checkout_id": spec.checkout_id,
            "user_id": spec.user_id,
            "order_number": _next_order_number(),
            "status": OrderStatus.PENDING_PAYMENT.value,
            "currency": spec.total.currency,
            "subtotal_amount": spec.subtotal.amount,
            "discount_amount": spec.discount.amount,
            "shipping_amount": spec.shipping_or_zero().amount,
            "tax_amount": spec.tax_or_zero().amount,
            "total_amount": spec.total.amount,
            "coupon_code": spec.coupon_code,
        },
        key=[Order.checkout_id],
    )
    if not created:
        return order
    items = [
        {
            "id": uuid.uuid4(),
            "order_id": order.id,
            "product_id": line.product_id,
            "variant_id": line.variant_id,
            "sku": line.sku,
            "quantity": line.quantity,
            "unit_price": line.unit_price.amount,
            "total_price": line.total.amount,
            "discount_amount": discount.amount,
            "tax_amount": line.tax.amount if line.tax else 0,
        }
        for line, discount in zip(spec.lines, spec.line_discounts(), strict=True)
    ]
    addresses = [
        {"id": uuid.uuid4(), "order_id": order.id, "type": kind.value, "address": address}
        for kind, address in (
            (AddressType.SHIPPING, spec.shipping_address),
            (AddressType.BILLING, spec.billing_address or spec.shipping_address),
        )
    ]
    event = OrderCreated.model_validate(order, from_attributes=True)
    await write_with_events(
        session,
        [
            *([insert(OrderItem).values(items)] if items else []),
            insert(OrderAddress).values(addresses),
            _transition_row(order.id, None, order.status, "checkout"),
        ],
        [NewEvent(AGGREGATE, order.id, "order.created", event)],
    )
    return order


def _transition_row(
    order_id: uuid.UUID, from_state: str | None, to_state: str, reason: str | None
) -> Insert:
    return insert(OrderStateTransition).values(
        id=uuid.uuid4(), order_id=order_id, from_state=from_state, to_state=to_state, reason=reason
    )


async def order_for_checkout(
    session: AsyncSession, checkout_id: uuid.UUID, *, lock: bool = False
) -> Order:
    """The order a checkout created."""
    query = select(Order).where(Order.checkout_id == checkout_id)
    order: Order | None = await session.scalar(query.with_for_update() if lock else query)
    if order is None:
        raise OrderNotFound("no order for this checkout", checkout_id=str(checkout_id))
    return order


async def transition(
    session: AsyncSession, order: Order, to: OrderStatus, reason: str | None
) -> bool:
    """Move `order` (locked by the caller) to `to`; False when it is there already.

    One statement: the order's UPDATE, its transition row and the event. `order` says the new
    status afterwards; its `updated_at` (the database's clock) is expired.
    """
    current = OrderStatus(order.status)
    if current == to:
        return False
    if to not in ALLOWED[current]:
        raise InvalidTransition(
            f"an order cannot go from {current} to {to}", order_id=str(order.id)
        )
    changed = OrderStatusChanged(
        order_id=order.id,
        order_number=order.order_number,
        user_id=order.user_id,
        from_state=current.value,
        to_state=to.value,
        reason=reason,
        total_amount=order.total_amount,
        refunded_amount=order.refunded_amount,
        currency=order.currency,
    )
    await write_with_events(
        session,
        [
            update(Order).where(Order.id == order.id).values(status=to.value),
            _transition_row(order.id, current.value, to.value, reason),
        ],
        [NewEvent(AGGREGATE, order.id, f"order.{to.value}", changed)],
    )
    written(session, order, {"status": to.value}, expire=["updated_at"])
    return True


# The way an order goes when all is well; cancelled and refunded are off it, and final.
FULFILMENT = (S.PENDING_PAYMENT, S.PAID, S.FULFILLING, S.SHIPPED, S.DELIVERED)


async def advance(session: AsyncSession, order: Order, to: OrderStatus, reason: str | None) -> bool:
    """Move `order` (locked by the caller) forward to `to` along the fulfilment path.

    Forward only and idempotent: a later state already satisfies an earlier one (the carrier may
    report the parcel shipped before the checkout marks the order fulfilling), and a cancelled or
    refunded order stays put. Delivered without shipped first records shipped on the way.
    Returns whether the order moved.
    """
    current = OrderStatus(order.status)
    if current not in FULFILMENT or FULFILMENT.index(current) >= FULFILMENT.index(to):
        return False
    if to == S.DELIVERED and current in (S.PAID, S.FULFILLING):
        await transition(session, order, S.SHIPPED, reason)
    return await transition(session, order, to, reason)


async def transition_checkout_order(
    session: AsyncSession, checkout_id: uuid.UUID, to: OrderStatus, reason: str | None = None
) -> Order:
    """Move the checkout's order forward to `to` (idempotent; a later state satisfies it).

    A cancelled or refunded order cannot go forward again: InvalidTransition.
    """
    order = await order_for_checkout(session, checkout_id, lock=True)
    if OrderStatus(order.status) not in FULFILMENT:
        raise InvalidTransition(
            f"an order cannot go from {order.status} to {to}", order_id=str(order.id)
        )
    await advance(session, order, to, reason)
    return order


async def cancel_for_checkout(
    session: AsyncSession, checkout_id: uuid.UUID, reason: str, *, refunded: bool
) -> bool:
    """Cancel the checkout's order (as `refunded` when money went back); False if there is none."""
    order = await session.scalar(
        select(Order).where(Order.checkout_id == checkout_id).with_for_update()
    )
    if order is None:
        return False
    if order.status in (OrderStatus.CANCELLED, OrderStatus.REFUNDED):
        return False
    target = OrderStatus.REFUNDED if refunded else OrderStatus.CANCELLED
    if target not in ALLOWED[OrderStatus(order.status)]:
        target = OrderStatus.CANCELLED
    return await transition(session, order, target, reason)


async def count_for_checkout(session: AsyncSession, checkout_id: uuid.UUID) -> int:
    """How many orders a checkout has (the invariant says at most one)."""
    count = await session.scalar(
        select(func.count()).select_from(Order).where(Order.checkout_id == checkout_id)
    )
    return int(count or 0)


@dataclass(frozen=True)
class OrderView:
    """An order with everything the buyer sees of it."""

    order: Order
    items: list[OrderItem]
    addresses: list[OrderAddress]
    transitions: list[OrderStateTransition]


async def _view(session: AsyncSession, order: Order) -> OrderView:
    items = await session.scalars(
        select(OrderItem).where(OrderItem.order_id == order.id).order_by(OrderItem.sku)
    )
    addresses = await session.scalars(
        select(OrderAddress).where(OrderAddress.order_id == order.id).order_by(OrderAddress.type)
    )
    transitions = await session.scalars(
        select(OrderStateTransition)
        .where(OrderStateTransition.order_id == order.id)
        .order_by(OrderStateTransition.changed_at, OrderStateTransition.id)
    )
    return OrderView(order, list(items), list(addresses), list(transitions))


async def get_order(
    session: AsyncSession, order_id: uuid.UUID, user_id: uuid.UUID | None
) -> OrderView:
    """One order; `user_id` restricts it to that buyer (None: an operator sees every order)."""
    order = await get_owned(session, Order, order_id, user_id)
    if order is None:
        raise OrderNotFound("no such order", order_id=str(order_id))
    return await _view(session, order)


async def list_orders(
    session: AsyncSession,
    user_id: uuid.UUID | None,
    *,
    limit: int = 50,
    before: datetime | None = None,
) -> list[OrderView]:
    """Newest first; `user_id` restricts to one buyer, `before` pages by creation time."""
    query = select(Order).order_by(Order.created_at.desc(), Order.id.desc()).limit(limit)
    if user_id is not None:
        query = query.where(Order.user_id == user_id)
    if before is not None:
        query = query.where(Order.created_at < before)
    return [await _view(session, order) for order in await session.scalars(query)]


# An order whose money went back to the buyer, in part or all of it, after the sale.
REFUNDABLE = frozenset({S.PAID, S.FULFILLING, S.SHIPPED, S.DELIVERED, S.PARTIALLY_REFUNDED})


async def record_refunds(
    session: AsyncSession,
    checkout_id: uuid.UUID,
    refunded: Decimal,
    reason: str,
    *,
    move: bool = True,
) -> Order:
    """The checkout's order as the provider's succeeded refunds leave it: `refunded_amount`
    (absolute, so a repeated report changes nothing), and, when `move`, `partially_refunded` or
    `refunded` with its transition and event for a paid order. A cancelled order keeps its
    status; an amount above the order's total is capped at it."""
    order = await order_for_checkout(session, checkout_id, lock=True)
    amount = min(refunded, order.total_amount)
    if amount != order.refunded_amount:
        await session.execute(
            update(Order).where(Order.id == order.id).values(refunded_amount=amount)
        )
        written(session, order, {"refunded_amount": amount}, expire=["updated_at"])
    current = OrderStatus(order.status)
    if not move or current not in REFUNDABLE or amount <= 0:
        return order
    target = S.REFUNDED if amount >= order.total_amount else S.PARTIALLY_REFUNDED
    if target in ALLOWED[current]:
        await transition(session, order, target, reason)
    return order


async def order_numbers(
    session: AsyncSession, order_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, str]:
    """The numbers of the orders `order_ids` (those that exist)."""
    if not order_ids:
        return {}
    rows = await session.execute(
        select(Order.id, Order.order_number).where(Order.id.in_(order_ids))
    )
    return {key: value for key, value in rows}

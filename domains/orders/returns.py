"""Returns: a buyer sends units of a delivered order back and is refunded their share.

A return is asked for in one transaction with its order row locked, so two returns of the same
units cannot both pass the check: the order is delivered (or partly refunded after its
delivery), within the return window of its delivery, and each line asks for no more than was
bought less what returns not rejected already ask for. Its refund is fixed then: per line, the
line's total less its share of the order's discount plus its tax, pro rata to the units (rounded
half-up; the last units of a line take what is left of it), plus the shipping and its tax when
the return completes every line. Every status change is recorded as a transition with its
`return.<status>` event.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import Insert, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.dml import UpdateBase

from domains.orders.errors import (
    InvalidTransition,
    OrderNotFound,
    OrderNotReturnable,
    ReturnKeyMismatch,
    ReturnLineUnknown,
    ReturnNotFound,
    ReturnQuantityExceeded,
    ReturnWindowClosed,
)
from domains.orders.events import RETURN_AGGREGATE, ReturnChanged
from domains.orders.models import (
    Order,
    OrderItem,
    OrderReturn,
    OrderReturnLine,
    OrderStateTransition,
    ReturnStateTransition,
)
from domains.orders.statuses import OrderStatus, ReturnStatus
from kit.db import written
from kit.money import Money
from kit.outbox import NewEvent, write_with_events

R = ReturnStatus
# Which status may follow which; needs_attention goes back to where the return stood (a retry)
# or on to refunded (settled by hand). An approved return is rejected when its parcel never came
# back and an operator closes it.
ALLOWED: dict[ReturnStatus, frozenset[ReturnStatus]] = {
    R.REQUESTED: frozenset({R.APPROVED, R.REJECTED, R.NEEDS_ATTENTION}),
    R.APPROVED: frozenset({R.RECEIVED, R.REJECTED, R.NEEDS_ATTENTION}),
    R.RECEIVED: frozenset({R.REFUNDED, R.NEEDS_ATTENTION}),
    R.NEEDS_ATTENTION: frozenset({R.APPROVED, R.RECEIVED, R.REFUNDED, R.REJECTED}),
    R.REJECTED: frozenset(),
    R.REFUNDED: frozenset(),
}
# An order whose units may be returned: delivered, possibly partly refunded since.
RETURNABLE = frozenset({OrderStatus.DELIVERED, OrderStatus.PARTIALLY_REFUNDED})


@dataclass(frozen=True)
class ReturnRequest:
    """What the buyer asks back: units per order line, and why."""

    order_id: uuid.UUID
    user_id: uuid.UUID
    idempotency_key: str
    lines: Mapping[uuid.UUID, int]
    reason: str

    def key_hash(self) -> str:
        """The buyer's key, hashed with the buyer's id (keys are per buyer)."""
        return hashlib.sha256(f"{self.user_id}:{self.idempotency_key}".encode()).hexdigest()

    def fingerprint(self) -> str:
        """The request's body, canonical: the same lines and reason make the same fingerprint."""
        body = {
            "lines": sorted([str(item), quantity] for item, quantity in self.lines.items()),
            "reason": self.reason,
        }
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class ReturnView:
    """A return with its lines (each with its order line) and its transitions."""

    order_return: OrderReturn
    lines: list[tuple[OrderReturnLine, OrderItem]]
    transitions: list[ReturnStateTransition]
    order: Order


def line_amount(item: OrderItem, currency: str) -> Money:
    """What a whole order line cost the buyer: its total less its discount share, plus its tax."""
    return Money.of(item.total_price - item.discount_amount + item.tax_amount, currency)


def line_refund(item: OrderItem, quantity: int, returned: int, refunded: Money) -> Money:
    """The refund of `quantity` more units of `item`, `returned` units of which already went to
    returns that refund `refunded` (in the order's currency): pro rata and rounded half-up,
    never more than what is left of the line; the last units take exactly what is left."""
    whole = line_amount(item, refunded.currency)
    left = whole - refunded
    if returned + quantity >= item.quantity:
        return left
    share = Money.rounded(whole.amount * quantity / item.quantity, whole.currency)
    return share.min(left)


def shipping_refund(order: Order, items: Sequence[OrderItem]) -> Money:
    """The order's shipping and its tax (all the order's tax less the lines')."""
    line_tax = sum((item.tax_amount for item in items), start=Decimal(0))
    return Money.of(order.shipping_amount + order.tax_amount - line_tax, order.currency)


async def _locked_order(session: AsyncSession, request: ReturnRequest) -> Order:
    order = await session.scalar(
        select(Order)
        .where(Order.id == request.order_id, Order.user_id == request.user_id)
        .with_for_update()
    )
    if order is None:
        raise OrderNotFound("no such order", order_id=str(request.order_id))
    return order


async def _delivered_at(session: AsyncSession, order: Order) -> datetime | None:
    delivered: datetime | None = await session.scalar(
        select(func.max(OrderStateTransition.changed_at)).where(
            OrderStateTransition.order_id == order.id,
            OrderStateTransition.to_state == OrderStatus.DELIVERED.value,
        )
    )
    return delivered


async def _check_returnable(session: AsyncSession, order: Order, window: timedelta) -> None:
    delivered = await _delivered_at(session, order)
    if OrderStatus(order.status) not in RETURNABLE or delivered is None:
        raise OrderNotReturnable(
            f"an order {order.status} cannot be returned: only a delivered one",
            order_id=str(order.id),
        )
    now: datetime | None = await session.scalar(select(func.now()))
    assert now is not None
    if now - delivered > window:
        raise ReturnWindowClosed(
            f"returns are accepted for {window.days} days after delivery",
            order_id=str(order.id),
            delivered_at=delivered.isoformat(),
        )


async def _taken(session: AsyncSession, order_id: uuid.UUID) -> dict[uuid.UUID, tuple[int, Money]]:
    """Per order line: units in returns not rejected, and the refund those returns fixed."""
    rows = await session.execute(
        select(
            OrderReturnLine.order_item_id,
            func.sum(OrderReturnLine.quantity),
            func.sum(OrderReturnLine.refund_amount),
            OrderReturn.currency,
        )
        .join(OrderReturn, OrderReturn.id == OrderReturnLine.return_id)
        .where(OrderReturn.order_id == order_id, OrderReturn.status != R.REJECTED.value)
        .group_by(OrderReturnLine.order_item_id, OrderReturn.currency)
    )
    return {item: (int(units), Money.of(amount, cur)) for item, units, amount, cur in rows}


@dataclass(frozen=True)
class _Planned:
    item: OrderItem
    quantity: int
    refund: Money


def _plan(
    order: Order,
    items: Sequence[OrderItem],
    asked: Mapping[uuid.UUID, int],
    taken: Mapping[uuid.UUID, tuple[int, Money]],
) -> tuple[list[_Planned], Money]:
    """Each asked line with its refund, and the shipping's refund (zero unless the return
    completes the order); ReturnLineUnknown, ReturnQuantityExceeded."""
    by_id = {item.id: item for item in items}
    zero = Money.zero(order.currency)
    planned = []
    for item_id, quantity in sorted(asked.items(), key=lambda pair: str(pair[0])):
        item = by_id.get(item_id)
        if item is None:
            raise ReturnLineUnknown("no such line in this order", order_item_id=str(item_id))
        returned, refunded = taken.get(item_id, (0, zero))
        if quantity > item.quantity - returned:
            raise ReturnQuantityExceeded(
                f"at most {item.quantity - returned} more units of this line can be returned",
                order_item_id=str(item_id),
                available=item.quantity - returned,
            )
        planned.append(_Planned(item, quantity, line_refund(item, quantity, returned, refunded)))
    complete = all(
        taken.get(item.id, (0, zero))[0] + asked.get(item.id, 0) >= item.quantity for item in items
    )
    return planned, shipping_refund(order, items) if complete else zero


async def request_return(
    session: AsyncSession, request: ReturnRequest, window: timedelta
) -> tuple[ReturnView, bool]:
    """The return `request` asks for, created now (True) or, for a repeat of the same request
    under the same key, the one created first (False); the same key with another request is
    ReturnKeyMismatch. Refused with nothing written: OrderNotFound, OrderNotReturnable,
    ReturnWindowClosed, ReturnLineUnknown, ReturnQuantityExceeded."""
    order = await _locked_order(session, request)
    earlier = await session.scalar(
        select(OrderReturn).where(
            OrderReturn.order_id == order.id, OrderReturn.key_hash == request.key_hash()
        )
    )
    if earlier is not None:
        if earlier.fingerprint != request.fingerprint():
            raise ReturnKeyMismatch("this Idempotency-Key was used for another return request")
        return await view(session, earlier), False
    await _check_returnable(session, order, window)
    items = list(await session.scalars(select(OrderItem).where(OrderItem.order_id == order.id)))
    planned, shipping = _plan(order, items, request.lines, await _taken(session, order.id))
    refund = sum((p.refund for p in planned), start=shipping)
    return_id = uuid.uuid4()
    created = {
        "id": return_id,
        "order_id": order.id,
        "user_id": order.user_id,
        "key_hash": request.key_hash(),
        "fingerprint": request.fingerprint(),
        "status": R.REQUESTED.value,
        "reason": request.reason,
        "refund_amount": refund.amount,
        "shipping_refund_amount": shipping.amount,
        "currency": order.currency,
    }
    lines = [
        {
            "id": uuid.uuid4(),
            "return_id": return_id,
            "order_item_id": p.item.id,
            "quantity": p.quantity,
            "refund_amount": p.refund.amount,
        }
        for p in planned
    ]
    await session.execute(insert(OrderReturn).values(created))
    await session.execute(insert(OrderReturnLine).values(lines))
    await write_with_events(
        session,
        [_transition_row(return_id, None, R.REQUESTED, "buyer")],
        [_event(order, return_id, None, R.REQUESTED, "buyer", refund)],
    )
    row = await session.get_one(OrderReturn, return_id)
    return await view(session, row), True


def _transition_row(
    return_id: uuid.UUID, from_state: ReturnStatus | None, to: ReturnStatus, reason: str | None
) -> Insert:
    return insert(ReturnStateTransition).values(
        id=uuid.uuid4(),
        return_id=return_id,
        from_state=from_state.value if from_state else None,
        to_state=to.value,
        reason=reason,
    )


def _event(
    order: Order,
    return_id: uuid.UUID,
    from_state: ReturnStatus | None,
    to: ReturnStatus,
    reason: str | None,
    refund: Money,
) -> NewEvent:
    payload = ReturnChanged(
        return_id=return_id,
        order_id=order.id,
        order_number=order.order_number,
        user_id=order.user_id,
        from_state=from_state.value if from_state else None,
        to_state=to.value,
        reason=reason,
        refund_amount=refund.amount,
        currency=refund.currency,
    )
    return NewEvent(RETURN_AGGREGATE, return_id, f"return.{to.value}", payload)


async def locked_return(session: AsyncSession, return_id: uuid.UUID) -> OrderReturn:
    """The return, locked for a change; ReturnNotFound."""
    row = await session.scalar(
        select(OrderReturn).where(OrderReturn.id == return_id).with_for_update()
    )
    if row is None:
        raise ReturnNotFound("no such return", return_id=str(return_id))
    return row


@dataclass(frozen=True)
class Label:
    """The carrier's return label."""

    carrier: str
    tracking_number: str
    label_url: str | None


async def move(
    session: AsyncSession,
    return_id: uuid.UUID,
    to: ReturnStatus,
    reason: str | None,
    *,
    label: Label | None = None,
    note: str | None = None,
) -> bool:
    """Move the return to `to` with its transition and event (False: it is there already), and
    record the label or an operator's note given with the move. InvalidTransition otherwise."""
    row = await locked_return(session, return_id)
    values: dict[str, object] = {}
    if label is not None:
        values.update(
            carrier=label.carrier, tracking_number=label.tracking_number, label_url=label.label_url
        )
    if note is not None:
        values["note"] = note
    current = ReturnStatus(row.status)
    changes: list[UpdateBase] = []
    events: list[NewEvent] = []
    if current != to:
        if to not in ALLOWED[current]:
            raise InvalidTransition(
                f"a return cannot go from {current} to {to}", return_id=str(return_id)
            )
        order = await session.get_one(Order, row.order_id)
        values["status"] = to.value
        changes.append(_transition_row(return_id, current, to, reason))
        refund = Money.of(row.refund_amount, row.currency)
        events.append(_event(order, return_id, current, to, reason, refund))
    if values:
        changes.insert(0, update(OrderReturn).where(OrderReturn.id == return_id).values(values))
        await write_with_events(session, changes, events)
        written(session, row, values, expire=["updated_at"])
    return current != to


@dataclass(frozen=True)
class Received:
    """Units of a return's line that came back, and how many of them go back to stock."""

    order_item_id: uuid.UUID
    quantity: int
    restock: int


async def receive(
    session: AsyncSession, return_id: uuid.UUID, received: Sequence[Received], reason: str
) -> list[Received]:
    """Record what came back of an approved return (each line's received and restocked units)
    and move it to `received`; a repeat changes nothing. What is recorded, per line.

    A line not named came back whole, none of it restocked; a named line's quantities are capped
    at the line's (restocked at received)."""
    row = await locked_return(session, return_id)
    lines = list(
        await session.scalars(select(OrderReturnLine).where(OrderReturnLine.return_id == row.id))
    )
    if ReturnStatus(row.status) in (R.APPROVED, R.NEEDS_ATTENTION) and not any(
        line.received_quantity for line in lines
    ):
        named = {r.order_item_id: r for r in received}
        for line in lines:
            asked = named.get(line.order_item_id)
            quantity = min(asked.quantity, line.quantity) if asked else line.quantity
            restock = min(asked.restock, quantity) if asked else 0
            line.received_quantity, line.restocked_quantity = quantity, restock
        await session.flush()
    await move(session, return_id, R.RECEIVED, reason)
    return [
        Received(line.order_item_id, line.received_quantity, line.restocked_quantity)
        for line in lines
    ]


async def view(session: AsyncSession, row: OrderReturn) -> ReturnView:
    """A return with its lines and transitions."""
    lines = await session.execute(
        select(OrderReturnLine, OrderItem)
        .join(OrderItem, OrderItem.id == OrderReturnLine.order_item_id)
        .where(OrderReturnLine.return_id == row.id)
        .order_by(OrderItem.sku)
    )
    transitions = await session.scalars(
        select(ReturnStateTransition)
        .where(ReturnStateTransition.return_id == row.id)
        .order_by(ReturnStateTransition.changed_at, ReturnStateTransition.id)
    )
    order = await session.get_one(Order, row.order_id)
    return ReturnView(row, [(line, item) for line, item in lines], list(transitions), order)


async def get_return(
    session: AsyncSession, return_id: uuid.UUID, user_id: uuid.UUID | None
) -> ReturnView:
    """One return; `user_id` restricts it to that buyer (None: an operator sees every one)."""
    row = await session.get(OrderReturn, return_id)
    if row is None or (user_id is not None and row.user_id != user_id):
        raise ReturnNotFound("no such return", return_id=str(return_id))
    return await view(session, row)


async def returns_of_order(
    session: AsyncSession, order_id: uuid.UUID, user_id: uuid.UUID | None
) -> list[ReturnView]:
    """An order's returns, oldest first; OrderNotFound for an order the caller may not see."""
    order = await session.get(Order, order_id)
    if order is None or (user_id is not None and order.user_id != user_id):
        raise OrderNotFound("no such order", order_id=str(order_id))
    rows = await session.scalars(
        select(OrderReturn)
        .where(OrderReturn.order_id == order_id)
        .order_by(OrderReturn.created_at, OrderReturn.id)
    )
    return [await view(session, row) for row in rows]


async def list_returns(
    session: AsyncSession, status: ReturnStatus | None, limit: int = 50
) -> list[ReturnView]:
    """Returns for operators, oldest first, optionally those at one status."""
    query = select(OrderReturn).order_by(OrderReturn.created_at, OrderReturn.id).limit(limit)
    if status is not None:
        query = query.where(OrderReturn.status == status.value)
    return [await view(session, row) for row in await session.scalars(query)]

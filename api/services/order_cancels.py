"""Cancelling an order after its checkout: the API's checks, then the order's cancellation
workflow (`workflows.order_cancel`), which decides against the carrier atomically."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable
from typing import TypeVar

from activities.shared import MoneyValue
from api.auth import Principal
from api.deps import Platform
from api.schemas import OrderCancelAccepted
from api.services.checkouts import update_id
from api.services.workflow_calls import answered
from api.services.workflow_calls import attend as attend_workflow
from domains.orders import service as orders
from domains.orders.errors import AlreadyShipped, OrderNotCancellable
from domains.orders.statuses import OrderStatus
from kit.money import Money
from workflows.order_cancel.client import OrderCancelClient
from workflows.order_cancel.models import CancelStatus, Decision, OrderCancelBody, OrderCancelInput

T = TypeVar("T")

# Past the carrier's pickup: too late to cancel (a return is the way back).
SHIPPED = frozenset({OrderStatus.SHIPPED, OrderStatus.DELIVERED})


def _temporal(order_id: uuid.UUID, call: Awaitable[T]) -> Awaitable[T]:
    """A call to the order's cancellation workflow; Temporal not answering is 503."""
    return answered(call, event="order_cancel.temporal_unavailable", subject=("order_id", order_id))


def _answer(body: OrderCancelBody) -> OrderCancelAccepted:
    if body.decision == Decision.ALREADY_SHIPPED:
        raise AlreadyShipped("the carrier has the parcel: the order can no longer be cancelled")
    return OrderCancelAccepted(order_id=body.order_id, status=body.status.value)


async def cancel(
    wired: Platform, order_id: uuid.UUID, caller: Principal, idempotency_key: str | None
) -> OrderCancelAccepted:
    """Cancel a paid order whose parcel the carrier does not have yet (202); 409
    `already_shipped` once it does, `order_not_cancellable` when it is cancelled or refunded
    already, or its checkout still runs. Asked again, the same cancellation answers."""
    # Deciding has no effect of its own (the workflow, one per order, is what acts): a repeated
    # request is not deduplicated as an update, so that it answers the cancellation's status now.
    update_id("order-cancel", order_id, idempotency_key)  # a malformed key is still a 400
    async with wired.databases["orders"].begin() as session:
        order = (await orders.get_order(session, order_id, caller.owner_filter())).order
    cancellations = OrderCancelClient(wired.temporal)
    status = OrderStatus(order.status)
    if status != OrderStatus.FULFILLING:
        asked = await _temporal(order.id, cancellations.status(order.id))
        if asked is not None and asked.decision is not None:
            return _answer(asked)
        if status in SHIPPED:
            raise AlreadyShipped("the carrier has the parcel: the order can no longer be cancelled")
        raise OrderNotCancellable(
            f"an order {status.value} cannot be cancelled"
            + (" (its checkout is still running)" if status == OrderStatus.PAID else ""),
            order_id=str(order.id),
        )
    request = cancellations.request(
        OrderCancelInput(
            order_id=order.id,
            checkout_id=order.checkout_id,
            total=MoneyValue.of(Money.of(order.total_amount, order.currency)),
            requested_by="operator" if caller.is_operator else "buyer",
        ),
    )
    return _answer(await _temporal(order.id, request))


async def attend(
    wired: Platform, order_id: uuid.UUID, note: str | None, idempotency_key: str | None
) -> OrderCancelAccepted:
    """An operator's answer to a cancellation waiting at needs_attention: run its failed steps
    again (`note` None) or record that they were settled by hand; 409
    `not_waiting_for_operator` when it does not wait for one."""
    # With a key, a repeated request answers the first; without one, each is a new request (one
    # made while the cancellation no longer waits is 409).
    request = (
        update_id("order-cancel-attend", order_id, idempotency_key) if idempotency_key else None
    )
    cancellations = OrderCancelClient(wired.temporal)
    await attend_workflow(
        cancellations,
        order_id,
        note,
        request,
        answered_by=_temporal,
        not_waiting="the order has no cancellation waiting for an operator",
    )
    body = await _temporal(order_id, cancellations.status(order_id))
    status = body.status if body is not None else CancelStatus.CANCELLING
    return OrderCancelAccepted(order_id=order_id, status=status.value)

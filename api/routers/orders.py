"""Orders: the buyer's own, or every order for an operator (read through `api.services.orders`)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, status

from api.deps import Anyone, Operator, PlatformDep
from api.routers.checkouts import RequestKey
from api.schemas import OrderCancelAccepted, OrderList, OrderOut, ResolutionIn
from api.services import order_cancels, orders
from api.services.orders import OrderWithShipments
from kit.db import columns

router = APIRouter(tags=["orders"])


def order_out(found: OrderWithShipments) -> OrderOut:
    """The API's view of an order with its shipments, amounts in the order's currency."""
    view, shipments, dispute = found
    return OrderOut.model_validate(
        {
            **columns(view.order),
            "subtotal": view.order.subtotal_amount,
            "items": view.items,
            "addresses": {a.type: a.address for a in view.addresses},
            "transitions": view.transitions,
            "shipments": shipments,
            "dispute": dispute,
        },
        from_attributes=True,
        context={"currency": view.order.currency},
    )


@router.get("/v1/orders/{order_id}", response_model=OrderOut)
async def get_order(order_id: uuid.UUID, wired: PlatformDep, caller: Anyone) -> OrderOut:
    """An order with items, addresses, state transitions and shipments."""
    return order_out(await orders.get(wired, order_id, caller.owner_filter()))


@router.get("/v1/orders", response_model=OrderList)
async def list_orders(
    wired: PlatformDep,
    caller: Anyone,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    before: Annotated[
        datetime | None, Query(description="created_at of the last order seen")
    ] = None,
) -> OrderList:
    """The caller's orders (an operator: all), newest first."""
    data = [order_out(o) for o in await orders.page(wired, caller.owner_filter(), limit, before)]
    return OrderList(data=data, next_before=data[-1].created_at if len(data) == limit else None)


@router.post(
    "/v1/orders/{order_id}/cancel",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=OrderCancelAccepted,
    responses={
        404: {"description": "no such order (or not the caller's)"},
        409: {"description": "`already_shipped` or `order_not_cancellable`"},
    },
)
async def cancel_order(
    order_id: uuid.UUID,
    wired: PlatformDep,
    caller: Anyone,
    idempotency_key: RequestKey = None,
) -> OrderCancelAccepted:
    """Cancel a paid order before the carrier has its parcel: the label is voided, the payment
    refunded in full, the stock put back, the coupon redemption released, and the order ends
    `cancelled`. The owner or an operator; 409 `already_shipped` once the carrier has the
    parcel. Asked again, the same cancellation answers (one refund)."""
    return await order_cancels.cancel(wired, order_id, caller, idempotency_key)


@router.post(
    "/v1/ops/orders/{order_id}/cancel/retry",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=OrderCancelAccepted,
    tags=["operations"],
)
async def retry_order_cancel(
    order_id: uuid.UUID, wired: PlatformDep, _: Operator, idempotency_key: RequestKey = None
) -> OrderCancelAccepted:
    """Run an order cancellation's failed steps again (it waits at needs_attention)."""
    return await order_cancels.attend(wired, order_id, None, idempotency_key)


@router.post(
    "/v1/ops/orders/{order_id}/cancel/resolve",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=OrderCancelAccepted,
    tags=["operations"],
)
async def resolve_order_cancel(
    order_id: uuid.UUID,
    body: ResolutionIn,
    wired: PlatformDep,
    _: Operator,
    idempotency_key: RequestKey = None,
) -> OrderCancelAccepted:
    """Record, with a note, that an order cancellation's failed steps were settled by hand; the
    cancellation then goes on (the order ends `cancelled`)."""
    return await order_cancels.attend(wired, order_id, body.note, idempotency_key)

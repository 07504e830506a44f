"""Orders: the buyer's own, or every order for an operator (read through `api.services.orders`)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import Anyone, PlatformDep
from api.schemas import OrderItemOut, OrderList, OrderOut, ShipmentOut, TransitionOut, money
from api.services import orders
from api.services.orders import OrderWithShipments

router = APIRouter(tags=["orders"])


def order_out(found: OrderWithShipments) -> OrderOut:
    """The API's view of an order with its shipments."""
    view, shipments = found
    order, currency = view.order, view.order.currency
    return OrderOut(
        id=order.id,
        order_number=order.order_number,
        checkout_id=order.checkout_id,
        user_id=order.user_id,
        status=order.status,
        currency=currency,
        subtotal_amount=money(order.subtotal_amount, currency),
        discount_amount=money(order.discount_amount, currency),
        total_amount=money(order.total_amount, currency),
        coupon_code=order.coupon_code,
        created_at=order.created_at,
        items=[
            OrderItemOut(
                product_id=i.product_id,
                variant_id=i.variant_id,
                sku=i.sku,
                quantity=i.quantity,
                unit_price=money(i.unit_price, currency),
                total_price=money(i.total_price, currency),
            )
            for i in view.items
        ],
        addresses={a.type: a.address for a in view.addresses},
        transitions=[TransitionOut.model_validate(t) for t in view.transitions],
        shipments=[ShipmentOut.model_validate(s) for s in shipments],
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

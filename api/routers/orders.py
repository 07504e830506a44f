"""Orders: the buyer's own, or every order for an operator."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import Anyone, PlatformDep
from api.schemas import OrderItemOut, OrderList, OrderOut, ShipmentOut, TransitionOut
from domains.orders import service as orders
from domains.shipping import service as shipping
from domains.shipping.models import Shipment
from kit.money import Money

router = APIRouter(tags=["orders"])


def _out(view: orders.OrderView, shipments: list[Shipment]) -> OrderOut:
    order, currency = view.order, view.order.currency

    def text(amount: object) -> str:
        return str(Money.rounded(str(amount), currency).amount)

    return OrderOut(
        id=order.id,
        order_number=order.order_number,
        checkout_id=order.checkout_id,
        user_id=order.user_id,
        status=order.status,
        currency=currency,
        subtotal_amount=text(order.subtotal_amount),
        discount_amount=text(order.discount_amount),
        total_amount=text(order.total_amount),
        coupon_code=order.coupon_code,
        created_at=order.created_at,
        items=[
            OrderItemOut(
                product_id=i.product_id,
                variant_id=i.variant_id,
                sku=i.sku,
                quantity=i.quantity,
                unit_price=text(i.unit_price),
                total_price=text(i.total_price),
            )
            for i in view.items
        ],
        addresses={a.type: a.address for a in view.addresses},
        transitions=[TransitionOut.model_validate(t) for t in view.transitions],
        shipments=[ShipmentOut.model_validate(s) for s in shipments],
    )


async def _with_shipments(wired: PlatformDep, views: list[orders.OrderView]) -> list[OrderOut]:
    async with wired.databases["shipping"].begin() as session:
        found = await shipping.shipments_for_orders(session, [v.order.id for v in views])
    return [_out(view, found[view.order.id]) for view in views]


@router.get("/v1/orders/{order_id}", response_model=OrderOut)
async def get_order(order_id: uuid.UUID, wired: PlatformDep, caller: Anyone) -> OrderOut:
    """An order with items, addresses, state transitions and shipments."""
    async with wired.databases["orders"].begin() as session:
        view = await orders.get_order(session, order_id, caller.owner_filter())
    return (await _with_shipments(wired, [view]))[0]


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
    async with wired.databases["orders"].begin() as session:
        views = await orders.list_orders(session, caller.owner_filter(), limit=limit, before=before)
    data = await _with_shipments(wired, views)
    return OrderList(data=data, next_before=data[-1].created_at if len(data) == limit else None)

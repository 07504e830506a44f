"""Orders: the buyer's own, or every order for an operator (read through `api.services.orders`)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import Anyone, PlatformDep
from api.schemas import OrderList, OrderOut
from api.services import orders
from api.services.orders import OrderWithShipments
from kit.db import columns

router = APIRouter(tags=["orders"])


def order_out(found: OrderWithShipments) -> OrderOut:
    """The API's view of an order with its shipments, amounts in the order's currency."""
    view, shipments, dispute = found
    return OrderOut.model_validate(
        {
            **columns(view.order),
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

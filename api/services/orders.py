"""Orders as the API offers them: from the orders database, with their shipments from the
shipping database and their payment's dispute, if any, from the payments database."""

from __future__ import annotations

import uuid
from datetime import datetime

from api.deps import Platform
from domains.orders import service as orders
from domains.payments import aftersale
from domains.payments.models import PaymentDispute
from domains.shipping import service as shipping
from domains.shipping.models import Shipment

OrderWithShipments = tuple[orders.OrderView, list[Shipment], PaymentDispute | None]


async def _with_shipments(
    wired: Platform, views: list[orders.OrderView]
) -> list[OrderWithShipments]:
    ids = [v.order.id for v in views]
    async with wired.databases["shipping"].begin() as session:
        found = await shipping.shipments_for_orders(session, ids)
    async with wired.databases["payments"].begin() as session:
        disputes = await aftersale.disputes_of_orders(session, ids)
    return [(view, found[view.order.id], disputes.get(view.order.id)) for view in views]


async def get(wired: Platform, order_id: uuid.UUID, owner: uuid.UUID | None) -> OrderWithShipments:
    """One order; `owner` restricts it to its buyer (None: an operator)."""
    async with wired.databases["orders"].begin() as session:
        view = await orders.get_order(session, order_id, owner)
    return (await _with_shipments(wired, [view]))[0]


async def page(
    wired: Platform, owner: uuid.UUID | None, limit: int, before: datetime | None
) -> list[OrderWithShipments]:
    """Orders newest first, created before `before`; `owner` restricts them to one buyer."""
    async with wired.databases["orders"].begin() as session:
        views = await orders.list_orders(session, owner, limit=limit, before=before)
    return await _with_shipments(wired, views)

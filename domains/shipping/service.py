"""Shipments: one per order, its label bought from the carrier; labels recorded before they are
bought; rates quoted for carts."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from domains.shipping.carrier import CarrierShipment
from domains.shipping.errors import ParcelWithCarrier, ShipmentNotFound
from domains.shipping.events import AGGREGATE, ShipmentChanged
from domains.shipping.models import LabelPurchase, Shipment, ShipmentEvent
from domains.shipping.statuses import ShipmentStatus
from kit.db import insert_if_absent, insert_or_get
from kit.outbox import append_event


async def record_booking(
    session: AsyncSession,
    *,
    order_id: uuid.UUID,
    checkout_id: uuid.UUID,
    ship_to: dict[str, Any],
    carrier: str,
    bought: CarrierShipment,
) -> Shipment:
    """Store the carrier's bought shipment as the order's shipment (a retry finds the first)."""
    if bought.tracking_code is None:
        raise ValueError("a shipment is recorded once its label is bought")
    shipment, created = await insert_or_get(
        session,
        Shipment,
        {
            "id": uuid.uuid4(),
            "order_id": order_id,
            "checkout_id": checkout_id,
            "carrier": carrier,
            "tracking_number": bought.tracking_code,
            "label_url": bought.label_url,
            "carrier_shipment_id": bought.id,
            "status": ShipmentStatus.LABEL_CREATED.value,
            "ship_to": ship_to,
        },
        key=[Shipment.order_id],
    )
    if created:
        await _event(session, "created", shipment)
    return shipment


async def purchase(session: AsyncSession, key: str) -> LabelPurchase | None:
    """The label purchase recorded under `key`, if any."""
    return await session.get(LabelPurchase, key)


async def purchase_of(session: AsyncSession, carrier_shipment_id: str) -> LabelPurchase | None:
    """The label purchase that claimed the carrier's shipment, if any."""
    return await session.scalar(
        select(LabelPurchase).where(LabelPurchase.carrier_shipment_id == carrier_shipment_id)
    )


async def record_purchase(
    session: AsyncSession,
    *,
    key: str,
    kind: str,
    order_id: uuid.UUID,
    carrier: str,
    carrier_shipment_id: str,
    carrier_rate_id: str,
) -> LabelPurchase:
    """Record the carrier's shipment and the rate to buy under `key`, before buying it; a retry
    (or a concurrent attempt) gets the purchase recorded first."""
    row, _ = await insert_or_get(
        session,
        LabelPurchase,
        {
            "key": key,
            "kind": kind,
            "order_id": order_id,
            "carrier": carrier,
            "carrier_shipment_id": carrier_shipment_id,
            "carrier_rate_id": carrier_rate_id,
        },
        key=[LabelPurchase.key],
    )
    return row


async def shipment_for_order(
    session: AsyncSession, order_id: uuid.UUID, *, lock: bool = False
) -> Shipment | None:
    """The order's shipment, if any."""
    query = select(Shipment).where(Shipment.order_id == order_id)
    return await session.scalar(query.with_for_update() if lock else query)


async def mark_cancelled(session: AsyncSession, shipment: Shipment) -> bool:
    """Record that the carrier cancelled the shipment; False if it already was."""
    if shipment.status == ShipmentStatus.CANCELLED:
        return False
    shipment.status = ShipmentStatus.CANCELLED.value
    await _event(session, "cancelled", shipment)
    return True


async def withdraw(session: AsyncSession, order_id: uuid.UUID) -> Shipment | None:
    """Take the order's parcel back from the carrier before pickup: its shipment is `cancelled`
    unless tracking has moved it past `label_created` (ParcelWithCarrier). None without a shipment.

    The guard is the UPDATE's WHERE: a tracking event recorded afterwards keeps the shipment
    cancelled (`record_tracking` moves no cancelled shipment), so it cannot move the order.
    Withdrawing again finds the shipment cancelled and answers it.
    """
    claimed = await session.scalar(
        update(Shipment)
        .where(
            Shipment.order_id == order_id,
            Shipment.status == ShipmentStatus.LABEL_CREATED.value,
        )
        .values(status=ShipmentStatus.CANCELLED.value)
        .returning(Shipment)
        .execution_options(populate_existing=True)
    )
    if claimed is not None:
        await _event(session, "cancelled", claimed)
        return claimed
    shipment = await shipment_for_order(session, order_id)
    if shipment is None or shipment.status == ShipmentStatus.CANCELLED:
        return shipment
    raise ParcelWithCarrier(
        f"the carrier has the parcel ({shipment.status})", order_id=str(order_id)
    )


async def restore_withdrawn(session: AsyncSession, shipment_id: uuid.UUID) -> ShipmentStatus:
    """Undo `withdraw` when the carrier refused to void the label (the parcel moved before its
    tracking reached us): the shipment takes the furthest status its recorded tracking reached
    (shipped when it first left), and that status is announced so that the order follows it."""
    shipment = await session.get_one(Shipment, shipment_id, with_for_update=True)
    if shipment.status != ShipmentStatus.CANCELLED:
        return ShipmentStatus(shipment.status)
    tracked = (
        await session.execute(
            select(ShipmentEvent.status, ShipmentEvent.occurred_at)
            .where(ShipmentEvent.shipment_id == shipment_id)
            .order_by(ShipmentEvent.occurred_at)
        )
    ).all()
    reached = [(ShipmentStatus(s), at) for s, at in tracked if ShipmentStatus(s) in PROGRESS]
    furthest = max((s for s, _ in reached), key=PROGRESS.__getitem__, default=None)
    shipment.status = (furthest or ShipmentStatus.LABEL_CREATED).value
    left = [at for s, at in reached if PROGRESS[s] >= PROGRESS[ShipmentStatus.IN_TRANSIT]]
    if left and shipment.shipped_at is None:
        shipment.shipped_at = left[0]
    await _event(session, shipment.status, shipment)
    return ShipmentStatus(shipment.status)


async def _event(session: AsyncSession, kind: str, shipment: Shipment) -> None:
    event = ShipmentChanged.model_validate(shipment, from_attributes=True)
    await append_event(session, AGGREGATE, shipment.id, f"shipment.{kind}", event)


async def shipments_for_orders(
    session: AsyncSession, order_ids: list[uuid.UUID]
) -> dict[uuid.UUID, list[Shipment]]:
    """Each order's shipments."""
    found: dict[uuid.UUID, list[Shipment]] = {order_id: [] for order_id in order_ids}
    for shipment in await session.scalars(select(Shipment).where(Shipment.order_id.in_(order_ids))):
        found[shipment.order_id].append(shipment)
    return found


# How far along a parcel is; tracking only ever moves a shipment forward.
PROGRESS = {
    ShipmentStatus.LABEL_CREATED: 0,
    ShipmentStatus.IN_TRANSIT: 1,
    ShipmentStatus.OUT_FOR_DELIVERY: 2,
    ShipmentStatus.DELIVERED: 3,
}


async def record_tracking(
    session: AsyncSession,
    *,
    carrier: str,
    carrier_shipment_id: str,
    provider_event_id: str,
    status: ShipmentStatus,
    occurred_at: datetime,
) -> bool:
    """Record a carrier's tracking event once; False for a redelivery.

    Events may arrive out of order: each is kept in `shipment_events`, and the shipment's status
    only moves forward (a late `in_transit` after `delivered` changes nothing but the history).
    """
    shipment = await session.scalar(
        select(Shipment)
        .where(Shipment.carrier == carrier, Shipment.carrier_shipment_id == carrier_shipment_id)
        .with_for_update()
    )
    if shipment is None:
        raise ShipmentNotFound(
            "no shipment with this carrier id", carrier_shipment_id=carrier_shipment_id
        )
    recorded = await insert_if_absent(
        session,
        ShipmentEvent,
        {
            "id": uuid.uuid4(),
            "shipment_id": shipment.id,
            "status": status.value,
            "occurred_at": occurred_at,
            "provider_event_id": provider_event_id,
        },
        key=[ShipmentEvent.shipment_id, ShipmentEvent.provider_event_id],
    )
    if recorded is None:
        return False
    current = ShipmentStatus(shipment.status)
    if current != ShipmentStatus.CANCELLED and PROGRESS.get(status, -1) > PROGRESS.get(current, -1):
        shipment.status = status.value
        if status == ShipmentStatus.IN_TRANSIT and shipment.shipped_at is None:
            shipment.shipped_at = occurred_at
        await _event(session, status.value, shipment)
    return True

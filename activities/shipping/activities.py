"""Shipping step of the checkout: book the shipment (compensated by cancelling it)."""

from __future__ import annotations

from temporalio import activity

from activities.errors import business_failures
from activities.shared import OrderRef
from activities.shipping.contract import CANCEL, CREATE, CreateShipmentInput, ShipmentInfo
from domains.shipping import service
from domains.shipping.carrier import CarrierClient
from kit.db import DomainDatabase


class ShippingActivities:
    """Activities on the `shipping` task queue: the shipping database and the carrier."""

    def __init__(self, db: DomainDatabase, carrier: CarrierClient) -> None:
        self.db = db
        self.carrier = carrier

    @activity.defn(name=CREATE.name)
    async def create_shipment(self, input: CreateShipmentInput) -> ShipmentInfo:
        """Book the order's one shipment with the carrier (idempotent per checkout)."""
        ship_to = input.ship_to.model_dump(mode="json")
        async with self.db.begin() as session:
            existing = await service.shipment_for_order(session, input.order_id)
        if existing is None:
            with business_failures():
                booking = await self.carrier.book(
                    reference=str(input.order_id),
                    ship_to=ship_to,
                    key=f"{input.checkout_id}:shipment",
                )
            async with self.db.begin() as session:
                existing = await service.record_booking(
                    session,
                    order_id=input.order_id,
                    checkout_id=input.checkout_id,
                    ship_to=ship_to,
                    booking=booking,
                )
        return ShipmentInfo(
            shipment_id=existing.id,
            carrier=existing.carrier,
            tracking_number=existing.tracking_number,
        )

    @activity.defn(name=CANCEL.name)
    async def cancel_shipment(self, input: OrderRef) -> bool:
        """Compensation of create: cancel the booking; no-op if there is none."""
        async with self.db.begin() as session:
            shipment = await service.shipment_for_order(session, input.order_id)
        if shipment is None or shipment.status == "cancelled":
            return False
        if shipment.carrier_shipment_id:
            await self.carrier.cancel(
                shipment.carrier_shipment_id, key=f"{input.checkout_id}:shipment-cancel"
            )
        async with self.db.begin() as session:
            locked = await service.shipment_for_order(session, input.order_id, lock=True)
            return locked is not None and await service.mark_cancelled(session, locked)

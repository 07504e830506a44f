"""Shipping step of the checkout: book the shipment (compensated by cancelling it)."""

from __future__ import annotations

from temporalio import activity

from activities.shared import Address
from activities.shipping.contract import (
    CANCEL,
    CREATE,
    CancelShipmentInput,
    CreateShipmentInput,
    ShipmentInfo,
)
from domains.shipping import service
from domains.shipping.carrier import Booking, CarrierClient
from domains.shipping.errors import CarrierRejected
from kit.db import DomainDatabase


class ShippingActivities:
    """Activities on the `shipping` task queue: the shipping database and the carrier."""

    def __init__(self, db: DomainDatabase, carrier: CarrierClient) -> None:
        self.db = db
        self.carrier = carrier

    async def _book(
        self, input: CreateShipmentInput | CancelShipmentInput, ship_to: Address
    ) -> Booking:
        """Book (or, under the same key and request, find again) the order's one shipment."""
        return await self.carrier.book(
            reference=str(input.order_id),
            ship_to=ship_to.model_dump(mode="json"),
            key=f"{input.checkout_id}:shipment",
        )

    @activity.defn(name=CREATE.name)
    async def create_shipment(self, input: CreateShipmentInput) -> ShipmentInfo:
        """Book the order's one shipment with the carrier (idempotent per checkout)."""
        async with self.db.begin() as session:
            existing = await service.shipment_for_order(session, input.order_id)
        if existing is None:
            booking = await self._book(input, input.ship_to)
            async with self.db.begin() as session:
                existing = await service.record_booking(
                    session,
                    order_id=input.order_id,
                    checkout_id=input.checkout_id,
                    ship_to=input.ship_to.model_dump(mode="json"),
                    booking=booking,
                )
        return ShipmentInfo(
            shipment_id=existing.id,
            carrier=existing.carrier,
            tracking_number=existing.tracking_number,
        )

    @activity.defn(name=CANCEL.name)
    async def cancel_shipment(self, input: CancelShipmentInput) -> bool:
        """Compensation of create: cancel the booking; no-op if there is none.

        A booking the carrier made while its record was never written (the step was cancelled
        or failed after the carrier's answer) is found again under the booking's own idempotency
        key and cancelled too: no parcel outlives its checkout.
        """
        key = f"{input.checkout_id}:shipment-cancel"
        async with self.db.begin() as session:
            shipment = await service.shipment_for_order(session, input.order_id)
        if shipment is None:
            if input.ship_to is not None:
                await self._cancel_unrecorded(input, input.ship_to, key)
            return False
        if shipment.status == "cancelled":
            return False
        if shipment.carrier_shipment_id:
            await self.carrier.cancel(shipment.carrier_shipment_id, key=key)
        async with self.db.begin() as session:
            locked = await service.shipment_for_order(session, input.order_id, lock=True)
            return locked is not None and await service.mark_cancelled(session, locked)

    async def _cancel_unrecorded(
        self, input: CancelShipmentInput, ship_to: Address, key: str
    ) -> None:
        """Cancel a booking the carrier may have made without our record of it."""
        try:
            booking = await self._book(input, ship_to)
        except CarrierRejected:
            return  # the carrier refused the booking itself: there is none to cancel
        await self.carrier.cancel(booking.id, key=key)

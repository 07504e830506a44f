"""The shipping activities as the workflow calls them: names and payloads."""

from __future__ import annotations

import uuid

from activities.shared import ActivityName, Address, Payload


class CreateShipmentInput(Payload):
    """Book one shipment for an order."""

    checkout_id: uuid.UUID
    order_id: uuid.UUID
    ship_to: Address


class ShipmentInfo(Payload):
    """The booked shipment."""

    shipment_id: uuid.UUID
    carrier: str
    tracking_number: str


class CancelShipmentInput(Payload):
    """Cancel an order's shipment; `ship_to` (the booking's own request) lets the compensation
    find a booking the carrier made whose record was never written (histories recorded before it
    carry only the two ids)."""

    checkout_id: uuid.UUID
    order_id: uuid.UUID
    ship_to: Address | None = None


CREATE = ActivityName("shipping.create", CreateShipmentInput, ShipmentInfo)
CANCEL = ActivityName("shipping.cancel", CancelShipmentInput, bool)

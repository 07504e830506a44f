"""The shipping activities as the workflow calls them: names and payloads."""

from __future__ import annotations

import uuid

from activities.shared import ActivityName, Address, OrderRef, Payload


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


CREATE = ActivityName("shipping.create", CreateShipmentInput, ShipmentInfo)
CANCEL = ActivityName("shipping.cancel", OrderRef, bool)

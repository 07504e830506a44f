"""Events the shipping domain publishes through its outbox."""

from __future__ import annotations

import uuid

from pydantic import BaseModel

AGGREGATE = "shipment"


class ShipmentChanged(BaseModel):
    """`shipment.created`, `shipment.cancelled` (tracking events come from the carrier)."""

    shipment_id: uuid.UUID
    order_id: uuid.UUID
    checkout_id: uuid.UUID
    carrier: str
    tracking_number: str
    status: str

"""Events the shipping domain publishes through its outbox."""

from __future__ import annotations

import uuid

from pydantic import AliasChoices, BaseModel, Field

AGGREGATE = "shipment"


class ShipmentChanged(BaseModel):
    """`shipment.created`, `shipment.cancelled` (tracking events come from the carrier).

    Read from the `Shipment` row as it now is (`model_validate(row, from_attributes=True)`).
    """

    shipment_id: uuid.UUID = Field(validation_alias=AliasChoices("shipment_id", "id"))
    order_id: uuid.UUID
    checkout_id: uuid.UUID
    carrier: str
    tracking_number: str
    status: str

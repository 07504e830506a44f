"""The inventory's activities as the workflow calls them: names and payloads."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import Field

from activities.shared import ActivityName, Line, OrderRef, Payload, ReleaseInput


class ReserveInventoryInput(Payload):
    """Reserve every line of a checkout, or none."""

    checkout_id: uuid.UUID
    lines: list[Line]
    expires_at: datetime


class InventoryReservation(Payload):
    """What is held for a checkout."""

    reservation_ids: list[uuid.UUID]


RESERVE = ActivityName("inventory.reserve", ReserveInventoryInput, InventoryReservation)
RELEASE = ActivityName("inventory.release", ReleaseInput, int)
COMMIT = ActivityName("inventory.commit", OrderRef, int)


class RestockLine(Payload):
    """Units of an order line that came back, to put back on the shelf."""

    order_item_id: uuid.UUID
    variant_id: uuid.UUID
    quantity: int = Field(gt=0)


class RestockInput(Payload):
    """A return's received units to restock; each (return, order line) restocks at most once."""

    return_id: uuid.UUID
    lines: list[RestockLine]


RESTOCK = ActivityName("inventory.restock", RestockInput, int)

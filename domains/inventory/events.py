"""Events the inventory domain publishes through its outbox."""

from __future__ import annotations

import uuid

from pydantic import BaseModel

AGGREGATE = "inventory_item"


class StockLevel(BaseModel):
    """`inventory.stock_set`: an operator set the total stock of a variant."""

    variant_id: uuid.UUID
    total_stock: int
    reserved: int


class ReservationChanged(BaseModel):
    """`inventory.reserved`, `.released`, `.committed`, `.expired` for one checkout and variant.

    Read from the `InventoryReservation` row as it now is (`model_validate(row,
    from_attributes=True)`).
    """

    checkout_id: uuid.UUID
    variant_id: uuid.UUID
    quantity: int
    status: str
    order_id: uuid.UUID | None = None


class Restocked(BaseModel):
    """`inventory.restocked`: returned units of a variant went back to stock (once per return and
    order line)."""

    return_id: uuid.UUID
    order_item_id: uuid.UUID
    variant_id: uuid.UUID
    quantity: int

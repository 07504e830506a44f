"""Inventory steps of the checkout: reserve (compensated by release) and commit; and a
return's restock."""

from __future__ import annotations

from temporalio import activity

from activities.inventory.contract import (
    COMMIT,
    RELEASE,
    RESERVE,
    RESTOCK,
    InventoryReservation,
    ReserveInventoryInput,
    RestockInput,
)
from activities.shared import OrderRef, ReleaseInput
from domains.inventory import service
from kit.db import DomainDatabase


class InventoryActivities:
    """Activities on the `inventory` task queue, holding only the inventory database."""

    def __init__(self, db: DomainDatabase) -> None:
        self.db = db

    @activity.defn(name=RESERVE.name)
    async def reserve_inventory(self, input: ReserveInventoryInput) -> InventoryReservation:
        """Reserve every line or none; `out_of_stock` when a line is short."""
        lines = [service.Line(x.product_id, x.variant_id, x.quantity) for x in input.lines]
        async with self.db.begin() as session:
            rows = await service.reserve(session, input.checkout_id, lines, input.expires_at)
        return InventoryReservation(reservation_ids=[row.id for row in rows])

    @activity.defn(name=RELEASE.name)
    async def release_inventory(self, input: ReleaseInput) -> int:
        """Compensation of reserve: release what the checkout holds (and restock if asked)."""
        async with self.db.begin() as session:
            return await service.release(session, input.checkout_id, restock=input.restock)

    @activity.defn(name=COMMIT.name)
    async def commit_inventory(self, input: OrderRef) -> int:
        """The payment is captured: reserved units become sold units."""
        async with self.db.begin() as session:
            return await service.commit(session, input.checkout_id, input.order_id)

    @activity.defn(name=RESTOCK.name)
    async def restock(self, input: RestockInput) -> int:
        """A return's received units go back on the shelf, at most once per return and line;
        how many units went back now."""
        lines = [
            service.ReturnedLine(x.order_item_id, x.variant_id, x.quantity) for x in input.lines
        ]
        async with self.db.begin() as session:
            return await service.restock(session, input.return_id, lines)

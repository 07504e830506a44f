"""The catalog's writes that span domains: stock is kept by inventory for a product's variant."""

from __future__ import annotations

import uuid

from api.deps import Platform
from domains.inventory import service as inventory
from domains.inventory.models import InventoryItem
from domains.products import service as products


async def set_stock(wired: Platform, variant_id: uuid.UUID, total_stock: int) -> InventoryItem:
    """Set a variant's total stock (404 for an unknown variant, 409 `stock_below_reserved`
    under what checkouts hold)."""
    async with wired.databases["products"].begin() as session:
        product_id = await products.variant_product(session, variant_id)
    async with wired.databases["inventory"].begin() as session:
        return await inventory.set_stock(session, variant_id, product_id, total_stock)

"""Inventory failures with stable codes."""

from __future__ import annotations

from kit.errors import Conflict, NotFound


class InventoryNotFound(NotFound):
    """The variant has no inventory record."""

    code = "inventory_not_found"


class OutOfStock(Conflict):
    """Not enough available units for at least one line."""

    code = "out_of_stock"


class StockBelowReserved(Conflict):
    """Total stock cannot drop below what checkouts currently hold."""

    code = "stock_below_reserved"

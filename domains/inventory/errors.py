"""Inventory failures with stable codes."""

from __future__ import annotations

from kit.errors import Conflict, NotFound


class InventoryNotFound(NotFound, code="inventory_not_found"):
    """The variant has no inventory record."""


class OutOfStock(Conflict, code="out_of_stock"):
    """Not enough available units for at least one line."""


class StockBelowReserved(Conflict, code="stock_below_reserved"):
    """Total stock cannot drop below what checkouts currently hold."""

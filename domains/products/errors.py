"""Catalog failures with stable codes."""

from __future__ import annotations

from kit.errors import Conflict, DomainError, NotFound


class ProductNotFound(NotFound):
    """No such product or variant."""

    code = "product_not_found"


class SkuTaken(Conflict):
    """Another variant already has this SKU."""

    code = "sku_taken"


class NoPrice(DomainError):
    """The variant has no price in the asked currency at that instant."""

    code = "no_price"


class PriceChanged(DomainError):
    """The cart's price snapshot no longer holds."""

    code = "price_changed"

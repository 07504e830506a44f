"""Catalog failures with stable codes."""

from __future__ import annotations

from kit.errors import Conflict, DomainError, NotFound


class ProductNotFound(NotFound, code="product_not_found"):
    """No such product or variant."""


class SkuTaken(Conflict, code="sku_taken"):
    """Another variant already has this SKU."""


class NoPrice(DomainError, code="no_price"):
    """The variant has no price in the asked currency at that instant."""


class PriceChanged(DomainError, code="price_changed"):
    """The cart's price snapshot no longer holds."""

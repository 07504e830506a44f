"""Catalog step of the checkout: the price check (read-only, nothing to compensate)."""

from __future__ import annotations

from temporalio import activity

from activities.products.contract import PRICE_CART, PriceCartInput, PricedCart
from activities.shared import MoneyValue
from domains.products import service
from kit.db import DomainDatabase
from kit.money import Money


class ProductsActivities:
    """Activities on the `products` task queue, holding only the products database."""

    def __init__(self, db: DomainDatabase) -> None:
        self.db = db

    @activity.defn(name=PRICE_CART.name)
    async def price_cart(self, input: PriceCartInput) -> PricedCart:
        """Fail with `price_changed` unless every line's snapshot is the current price."""
        lines = [
            service.SeenLine(
                variant_id=line.variant_id,
                unit_price=Money.of(line.unit_price, input.currency),
                quantity=line.quantity,
            )
            for line in input.lines
        ]
        async with self.db.begin() as session:
            subtotal = await service.check_prices(session, lines, input.currency, input.at)
        return PricedCart(subtotal=MoneyValue.of(subtotal))

"""The catalog's activities as the workflow calls them: names and payloads."""

from __future__ import annotations

from datetime import datetime

from activities.shared import ActivityName, Line, MoneyValue, Payload


class PriceCartInput(Payload):
    """Check the cart's snapshot against the catalog's current prices."""

    currency: str
    lines: list[Line]
    at: datetime


class PricedCart(Payload):
    """The cart at current prices (equal to the snapshot, or the step failed)."""

    subtotal: MoneyValue


PRICE_CART = ActivityName("products.price_cart", PriceCartInput, PricedCart)

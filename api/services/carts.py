"""Carts as the API offers them: every change answers the cart as it now is; adding a variant
prices it through the catalog first."""

from __future__ import annotations

import uuid

from api.deps import Platform
from domains.cart import service as carts
from domains.cart.models import Cart, CartItem
from domains.products import service as products

CartView = tuple[Cart, list[CartItem]]


async def view(wired: Platform, cart_id: uuid.UUID, user_id: uuid.UUID) -> CartView:
    """The user's cart and its lines (404 `cart_not_found` for anybody else's)."""
    async with wired.databases["cart"].begin() as session:
        return await carts.get_cart(session, cart_id, user_id)


async def create(wired: Platform, user_id: uuid.UUID, currency: str) -> CartView:
    """A new, empty cart priced in `currency`."""
    async with wired.databases["cart"].begin() as session:
        return await carts.create_cart(session, user_id, currency), []


async def add_item(
    wired: Platform, cart_id: uuid.UUID, user_id: uuid.UUID, variant_id: uuid.UUID, quantity: int
) -> CartView:
    """Add units of a variant at its current price in the cart's currency (the same variant
    merges into its line); 422 `no_price` without one, 409 `cart_locked` during a checkout."""
    cart, _ = await view(wired, cart_id, user_id)
    async with wired.databases["products"].begin() as session:
        quote = await products.quote_one(session, variant_id, cart.currency)
    async with wired.databases["cart"].begin() as session:
        await carts.add_item(session, cart_id, user_id, quote, quantity)
    return await view(wired, cart_id, user_id)


async def set_quantity(
    wired: Platform, cart_id: uuid.UUID, user_id: uuid.UUID, item_id: uuid.UUID, quantity: int
) -> CartView:
    """Set a line's quantity."""
    async with wired.databases["cart"].begin() as session:
        await carts.set_quantity(session, cart_id, user_id, item_id, quantity)
    return await view(wired, cart_id, user_id)


async def remove_item(
    wired: Platform, cart_id: uuid.UUID, user_id: uuid.UUID, item_id: uuid.UUID
) -> CartView:
    """Remove a line."""
    async with wired.databases["cart"].begin() as session:
        await carts.remove_item(session, cart_id, user_id, item_id)
    return await view(wired, cart_id, user_id)

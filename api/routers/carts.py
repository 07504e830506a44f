"""Carts: a customer's own, priced in one currency."""

from __future__ import annotations

import uuid
from decimal import Decimal

from fastapi import APIRouter, status

from api.deps import Customer, PlatformDep
from api.schemas import CartIn, CartItemOut, CartOut, ItemIn, QuantityIn
from domains.cart import service as carts
from domains.cart.models import Cart, CartItem
from domains.products import service as products
from kit.money import Money

router = APIRouter(tags=["carts"])


def cart_out(cart: Cart, items: list[CartItem]) -> CartOut:
    """The API's view of a cart."""
    lines = []
    subtotal = Money.zero(cart.currency)
    for item in items:
        unit = Money.of(Decimal(str(item.price_snapshot["unit_price"])), cart.currency)
        total = unit * item.quantity
        subtotal = subtotal + total
        lines.append(
            CartItemOut(
                id=item.id,
                product_id=item.product_id,
                variant_id=item.variant_id,
                sku=str(item.price_snapshot["sku"]),
                quantity=item.quantity,
                unit_price=str(unit.amount),
                line_total=str(total.amount),
            )
        )
    return CartOut(
        id=cart.id,
        status=cart.status,
        currency=cart.currency,
        items=lines,
        subtotal=str(subtotal.amount),
        expires_at=cart.expires_at,
    )


async def _view(wired: PlatformDep, cart_id: uuid.UUID, user_id: uuid.UUID) -> CartOut:
    async with wired.databases["cart"].begin() as session:
        cart, items = await carts.get_cart(session, cart_id, user_id)
        return cart_out(cart, items)


@router.post("/v1/carts", status_code=status.HTTP_201_CREATED, response_model=CartOut)
async def create_cart(body: CartIn, wired: PlatformDep, caller: Customer) -> CartOut:
    """Open an empty cart priced in `currency`."""
    async with wired.databases["cart"].begin() as session:
        cart = await carts.create_cart(session, caller.user_id, body.currency)
        return cart_out(cart, [])


@router.get("/v1/carts/{cart_id}", response_model=CartOut)
async def get_cart(cart_id: uuid.UUID, wired: PlatformDep, caller: Customer) -> CartOut:
    """The caller's cart (404 for anybody else's)."""
    return await _view(wired, cart_id, caller.user_id)


@router.post("/v1/carts/{cart_id}/items", response_model=CartOut)
async def add_item(
    cart_id: uuid.UUID, body: ItemIn, wired: PlatformDep, caller: Customer
) -> CartOut:
    """Add units of a variant at its current price (the same variant merges into its line)."""
    async with wired.databases["cart"].begin() as session:
        cart, _ = await carts.get_cart(session, cart_id, caller.user_id)
        currency = cart.currency
    async with wired.databases["products"].begin() as session:
        quote = await products.quote_one(session, body.variant_id, currency)
    async with wired.databases["cart"].begin() as session:
        await carts.add_item(
            session,
            cart_id,
            caller.user_id,
            product_id=quote.product_id,
            variant_id=quote.variant_id,
            sku=quote.sku,
            quantity=body.quantity,
            unit_price=quote.unit_price,
            price_id=quote.price_id,
        )
    return await _view(wired, cart_id, caller.user_id)


@router.patch("/v1/carts/{cart_id}/items/{item_id}", response_model=CartOut)
async def change_quantity(
    cart_id: uuid.UUID, item_id: uuid.UUID, body: QuantityIn, wired: PlatformDep, caller: Customer
) -> CartOut:
    """Set a line's quantity (1..99)."""
    async with wired.databases["cart"].begin() as session:
        await carts.set_quantity(session, cart_id, caller.user_id, item_id, body.quantity)
    return await _view(wired, cart_id, caller.user_id)


@router.delete("/v1/carts/{cart_id}/items/{item_id}", response_model=CartOut)
async def remove_item(
    cart_id: uuid.UUID, item_id: uuid.UUID, wired: PlatformDep, caller: Customer
) -> CartOut:
    """Remove a line."""
    async with wired.databases["cart"].begin() as session:
        await carts.remove_item(session, cart_id, caller.user_id, item_id)
    return await _view(wired, cart_id, caller.user_id)

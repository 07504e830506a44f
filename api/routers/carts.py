"""Carts: a customer's own, priced in one currency (the work is in `api.services.carts`)."""

from __future__ import annotations

import uuid
from decimal import Decimal

from fastapi import APIRouter, status

from api.deps import Customer, PlatformDep
from api.schemas import (
    CartIn,
    CartItemOut,
    CartOut,
    ItemIn,
    QuantityIn,
    ShippingRateOut,
    ShippingRatesIn,
    ShippingRatesOut,
    money,
)
from api.services import carts, shipping
from api.services.carts import CartView
from kit.money import Money

router = APIRouter(tags=["carts"])


def cart_out(view: CartView) -> CartOut:
    """The API's view of a cart: each line at its snapshot price, and their sum."""
    cart, items = view
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
                unit_price=money(unit.amount, cart.currency),
                line_total=money(total.amount, cart.currency),
            )
        )
    return CartOut(
        id=cart.id,
        status=cart.status,
        currency=cart.currency,
        items=lines,
        subtotal=money(subtotal.amount, cart.currency),
        expires_at=cart.expires_at,
    )


@router.post("/v1/carts", status_code=status.HTTP_201_CREATED, response_model=CartOut)
async def create_cart(body: CartIn, wired: PlatformDep, caller: Customer) -> CartOut:
    """Open an empty cart priced in `currency`."""
    return cart_out(await carts.create(wired, caller.user_id, body.currency))


@router.get("/v1/carts/{cart_id}", response_model=CartOut)
async def get_cart(cart_id: uuid.UUID, wired: PlatformDep, caller: Customer) -> CartOut:
    """The caller's cart (404 for anybody else's)."""
    return cart_out(await carts.view(wired, cart_id, caller.user_id))


@router.post("/v1/carts/{cart_id}/items", response_model=CartOut)
async def add_item(
    cart_id: uuid.UUID, body: ItemIn, wired: PlatformDep, caller: Customer
) -> CartOut:
    """Add units of a variant at its current price (the same variant merges into its line)."""
    view = await carts.add_item(wired, cart_id, caller.user_id, body.variant_id, body.quantity)
    return cart_out(view)


@router.patch("/v1/carts/{cart_id}/items/{item_id}", response_model=CartOut)
async def change_quantity(
    cart_id: uuid.UUID, item_id: uuid.UUID, body: QuantityIn, wired: PlatformDep, caller: Customer
) -> CartOut:
    """Set a line's quantity (1..99)."""
    view = await carts.set_quantity(wired, cart_id, caller.user_id, item_id, body.quantity)
    return cart_out(view)


@router.delete("/v1/carts/{cart_id}/items/{item_id}", response_model=CartOut)
async def remove_item(
    cart_id: uuid.UUID, item_id: uuid.UUID, wired: PlatformDep, caller: Customer
) -> CartOut:
    """Remove a line."""
    return cart_out(await carts.remove_item(wired, cart_id, caller.user_id, item_id))


@router.post(
    "/v1/carts/{cart_id}/shipping-rates",
    response_model=ShippingRatesOut,
    responses={
        404: {"description": "not the caller's cart"},
        422: {"description": "empty cart, or no service reaches the address"},
        503: {"description": "the carrier did not answer"},
    },
)
async def shipping_rates(
    cart_id: uuid.UUID, body: ShippingRatesIn, wired: PlatformDep, caller: Customer
) -> ShippingRatesOut:
    """The carrier's rates for the cart to `shipping_address`, cheapest first; each `id` may be
    named as the checkout's `shipping_rate_id` until `expires_at`. 422 `address_unserviceable`
    when no service reaches the address, 503 `carrier_unavailable` when the carrier is down."""
    found = await shipping.quote_rates(wired, cart_id, caller.user_id, body.shipping_address)
    return ShippingRatesOut(
        rates=[
            ShippingRateOut(
                id=q.id,
                carrier=q.carrier,
                service=q.service,
                amount=money(q.amount, q.currency),
                currency=q.currency,
                delivery_days=q.delivery_days,
                expires_at=q.expires_at,
            )
            for q in found
        ]
    )

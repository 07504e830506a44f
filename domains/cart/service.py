"""Cart operations. Each takes the caller's session and never commits (its caller does)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from domains.cart.errors import (
    CartCurrencyMismatch,
    CartEmpty,
    CartLocked,
    CartNotFound,
    CartReleased,
    ItemNotFound,
    QuantityOutOfRange,
    TooManyLines,
)
from domains.cart.events import AGGREGATE, CartCheckoutEvent
from domains.cart.models import Cart, CartItem, CartRelease
from domains.cart.statuses import CartStatus
from kit.money import Money, normalize_currency
from kit.outbox import append_event

MAX_QUANTITY = 99
MAX_LINES = 100


class PricedVariant(Protocol):
    """A variant at its current price, as the catalog quotes it: what a cart line is made of."""

    @property
    def product_id(self) -> uuid.UUID: ...
    @property
    def variant_id(self) -> uuid.UUID: ...
    @property
    def sku(self) -> str: ...
    @property
    def unit_price(self) -> Money: ...
    @property
    def price_id(self) -> uuid.UUID: ...


@dataclass(frozen=True)
class LockedLine:
    """A line of a locked cart with the price snapshot the shopper saw."""

    product_id: uuid.UUID
    variant_id: uuid.UUID
    sku: str
    quantity: int
    unit_price: Decimal


@dataclass(frozen=True)
class LockedCart:
    """A cart held by one checkout."""

    cart_id: uuid.UUID
    currency: str
    lines: list[LockedLine]


async def _cart_for_update(session: AsyncSession, cart_id: uuid.UUID, user_id: uuid.UUID) -> Cart:
    cart = await session.scalar(
        select(Cart).where(Cart.id == cart_id, Cart.user_id == user_id).with_for_update()
    )
    if cart is None:
        raise CartNotFound("no such cart", cart_id=str(cart_id))
    return cart


async def _event(session: AsyncSession, kind: str, cart: Cart, checkout_id: uuid.UUID) -> None:
    await append_event(
        session,
        AGGREGATE,
        cart.id,
        f"cart.{kind}",
        CartCheckoutEvent(cart_id=cart.id, user_id=cart.user_id, checkout_id=checkout_id),
    )


async def lock_for_checkout(
    session: AsyncSession, cart_id: uuid.UUID, user_id: uuid.UUID, checkout_id: uuid.UUID
) -> LockedCart:
    """Hold the cart for `checkout_id`; again for the same checkout is a no-op, another is refused,
    and so is a checkout that released the cart already (CartReleased).

    The row lock (FOR UPDATE) serialises concurrent checkouts of one cart, and a lock with the
    unlock of the same checkout: exactly one wins, and a lock never lands after its own unlock.
    """
    cart = await _cart_for_update(session, cart_id, user_id)
    if await _released(session, cart_id, checkout_id):
        # An abandoned attempt of the lock step committing after the checkout gave the cart back.
        raise CartReleased("this checkout released the cart already", cart_id=str(cart_id))
    if cart.checkout_id == checkout_id and cart.status in (CartStatus.LOCKED, CartStatus.CONVERTED):
        pass  # a retry of our own step
    elif cart.status != CartStatus.ACTIVE:
        raise CartLocked("the cart is held by another checkout", cart_id=str(cart_id))
    else:
        items = await _items(session, cart_id)
        if not items:
            raise CartEmpty("the cart has no items", cart_id=str(cart_id))
        cart.status = CartStatus.LOCKED
        cart.checkout_id = checkout_id
        await _event(session, "locked", cart, checkout_id)
    items = await _items(session, cart_id)
    return LockedCart(
        cart_id=cart.id,
        currency=cart.currency,
        lines=[
            LockedLine(
                product_id=item.product_id,
                variant_id=item.variant_id,
                sku=str(item.price_snapshot["sku"]),
                quantity=item.quantity,
                unit_price=Decimal(str(item.price_snapshot["unit_price"])),
            )
            for item in items
        ],
    )


async def _items(session: AsyncSession, cart_id: uuid.UUID) -> list[CartItem]:
    rows = await session.scalars(
        select(CartItem).where(CartItem.cart_id == cart_id).order_by(CartItem.variant_id)
    )
    return list(rows)


async def _held_by(
    session: AsyncSession, cart_id: uuid.UUID, checkout_id: uuid.UUID
) -> Cart | None:
    return await session.scalar(
        select(Cart).where(Cart.id == cart_id, Cart.checkout_id == checkout_id).with_for_update()
    )


async def _released(session: AsyncSession, cart_id: uuid.UUID, checkout_id: uuid.UUID) -> bool:
    released = await session.scalar(
        select(CartRelease.checkout_id).where(
            CartRelease.cart_id == cart_id, CartRelease.checkout_id == checkout_id
        )
    )
    return released is not None


async def unlock(session: AsyncSession, cart_id: uuid.UUID, checkout_id: uuid.UUID) -> bool:
    """Make the cart editable again if `checkout_id` holds it; False if there was nothing to do.

    Either way the checkout is recorded as done with the cart, so that a lock attempt of it still
    in flight (abandoned by Temporal, not by the database) is refused when it arrives.
    """
    # The cart's row lock orders this with any lock attempt of the same checkout.
    cart = await session.scalar(select(Cart).where(Cart.id == cart_id).with_for_update())
    if cart is None:
        return False
    await session.execute(
        insert(CartRelease)
        .values(cart_id=cart_id, checkout_id=checkout_id)
        .on_conflict_do_nothing()
    )
    if cart.checkout_id != checkout_id or cart.status == CartStatus.ACTIVE:
        return False
    cart.status = CartStatus.ACTIVE
    cart.checkout_id = None
    await _event(session, "unlocked", cart, checkout_id)
    return True


async def mark_converted(session: AsyncSession, cart_id: uuid.UUID, checkout_id: uuid.UUID) -> None:
    """The checkout holding the cart produced a paid order: the cart is done."""
    cart = await _held_by(session, cart_id, checkout_id)
    if cart is None:
        raise CartLocked("the cart is not held by this checkout", cart_id=str(cart_id))
    if cart.status == CartStatus.CONVERTED:
        return
    cart.status = CartStatus.CONVERTED
    await _event(session, "converted", cart, checkout_id)


async def create_cart(
    session: AsyncSession, user_id: uuid.UUID, currency: str, *, expires_at: datetime | None = None
) -> Cart:
    """A new, empty, active cart priced in `currency`."""
    cart = Cart(
        user_id=user_id,
        currency=normalize_currency(currency),
        status=CartStatus.ACTIVE,
        expires_at=expires_at,
    )
    session.add(cart)
    await session.flush()
    return cart


async def add_item(
    session: AsyncSession,
    cart_id: uuid.UUID,
    user_id: uuid.UUID,
    variant: PricedVariant,
    quantity: int,
) -> CartItem:
    """Add a line (or add to the quantity of the variant's line) with a fresh price snapshot."""
    unit_price, variant_id = variant.unit_price, variant.variant_id
    cart = await _cart_for_update(session, cart_id, user_id)
    if cart.status != CartStatus.ACTIVE:
        raise CartLocked("the cart is held by a checkout", cart_id=str(cart_id))
    if unit_price.currency != cart.currency:
        raise CartCurrencyMismatch(
            f"the cart is in {cart.currency}, the price in {unit_price.currency}"
        )
    # The cart row lock above serialises edits of this cart, so reading the line is race-free.
    existing = await session.scalar(
        select(CartItem.quantity).where(
            CartItem.cart_id == cart_id, CartItem.variant_id == variant_id
        )
    )
    if not 1 <= quantity + (existing or 0) <= MAX_QUANTITY:
        raise QuantityOutOfRange(f"a line holds 1 to {MAX_QUANTITY} units")
    if existing is None and len(await _items(session, cart_id)) >= MAX_LINES:
        raise TooManyLines(f"a cart holds at most {MAX_LINES} lines")
    snapshot = {
        "sku": variant.sku,
        "unit_price": str(unit_price.amount),
        "currency": unit_price.currency,
        "price_id": str(variant.price_id),
        "priced_at": datetime.now(UTC).isoformat(),
    }
    statement = (
        insert(CartItem)
        .values(
            id=uuid.uuid4(),
            cart_id=cart_id,
            product_id=variant.product_id,
            variant_id=variant_id,
            quantity=quantity,
            price_snapshot=snapshot,
        )
        .on_conflict_do_update(
            index_elements=[CartItem.cart_id, CartItem.variant_id],
            set_={
                "quantity": CartItem.quantity + quantity,
                "price_snapshot": snapshot,
            },
        )
        .returning(CartItem)
    )
    return (await session.scalars(statement)).one()


async def get_cart(
    session: AsyncSession, cart_id: uuid.UUID, user_id: uuid.UUID
) -> tuple[Cart, list[CartItem]]:
    """The user's cart and its lines (CartNotFound for anybody else's)."""
    cart = await session.scalar(select(Cart).where(Cart.id == cart_id, Cart.user_id == user_id))
    if cart is None:
        raise CartNotFound("no such cart", cart_id=str(cart_id))
    return cart, await _items(session, cart_id)


async def _editable_item(
    session: AsyncSession, cart_id: uuid.UUID, user_id: uuid.UUID, item_id: uuid.UUID
) -> CartItem:
    cart = await _cart_for_update(session, cart_id, user_id)
    if cart.status != CartStatus.ACTIVE:
        raise CartLocked("the cart is held by a checkout", cart_id=str(cart_id))
    item = await session.scalar(
        select(CartItem).where(CartItem.id == item_id, CartItem.cart_id == cart_id)
    )
    if item is None:
        raise ItemNotFound("no such item in this cart", item_id=str(item_id))
    return item


async def set_quantity(
    session: AsyncSession, cart_id: uuid.UUID, user_id: uuid.UUID, item_id: uuid.UUID, quantity: int
) -> None:
    """Change a line's quantity (1..99)."""
    if not 1 <= quantity <= MAX_QUANTITY:
        raise QuantityOutOfRange(f"a line holds 1 to {MAX_QUANTITY} units")
    item = await _editable_item(session, cart_id, user_id, item_id)
    item.quantity = quantity


async def remove_item(
    session: AsyncSession, cart_id: uuid.UUID, user_id: uuid.UUID, item_id: uuid.UUID
) -> None:
    """Remove a line."""
    item = await _editable_item(session, cart_id, user_id, item_id)
    await session.delete(item)

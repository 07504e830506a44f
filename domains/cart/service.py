"""Cart operations. Each takes the caller's session and never commits (its caller does)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Protocol

from sqlalchemy import Row, Select, exists, select, update
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


async def _event(
    session: AsyncSession, kind: str, cart_id: uuid.UUID, user_id: uuid.UUID, checkout_id: uuid.UUID
) -> None:
    await append_event(
        session,
        AGGREGATE,
        cart_id,
        f"cart.{kind}",
        CartCheckoutEvent(cart_id=cart_id, user_id=user_id, checkout_id=checkout_id),
    )


async def lock_for_checkout(
    session: AsyncSession, cart_id: uuid.UUID, user_id: uuid.UUID, checkout_id: uuid.UUID
) -> LockedCart:
    """Hold the cart for `checkout_id`; again for the same checkout is a no-op, another is refused,
    and so is a checkout that released the cart already (CartReleased).

    The first attempt of a checkout is three statements: an UPDATE guarded by the cart's status
    (it takes the row lock), the lines with whether this checkout released the cart (read after
    the lock, so that a release committed meanwhile is seen: a lock never lands after its own
    unlock), and the event. Anything else (a retry, a cart held or gone) takes `_lock_checked`.
    """
    connection = await session.connection()
    locked = await connection.scalar(
        update(Cart)
        .where(Cart.id == cart_id, Cart.user_id == user_id, Cart.status == CartStatus.ACTIVE.value)
        .values(status=CartStatus.LOCKED.value, checkout_id=checkout_id)
        .returning(Cart.currency)
    )
    if locked is None:
        return await _lock_checked(session, cart_id, user_id, checkout_id)
    released = (
        exists()
        .where(CartRelease.cart_id == cart_id, CartRelease.checkout_id == checkout_id)
        .label("released")
    )
    rows = (await connection.execute(_lines(cart_id).add_columns(released))).all()
    if (rows and rows[0].released) or (not rows and await _released(session, cart_id, checkout_id)):
        # An abandoned attempt of the lock step committing after the checkout gave the cart back
        # (the caller's rollback undoes the UPDATE above).
        raise CartReleased("this checkout released the cart already", cart_id=str(cart_id))
    if not rows:
        raise CartEmpty("the cart has no items", cart_id=str(cart_id))
    await _event(session, "locked", cart_id, user_id, checkout_id)
    return LockedCart(cart_id, locked, [_locked_line(row) for row in rows])


async def _lock_checked(
    session: AsyncSession, cart_id: uuid.UUID, user_id: uuid.UUID, checkout_id: uuid.UUID
) -> LockedCart:
    """`lock_for_checkout` when the cart was not active: under the row lock (FOR UPDATE, which
    serialises it with other checkouts' locks and this checkout's unlock), a retry of our own
    step, a cart another checkout holds, or one that became active again meanwhile."""
    cart = await _cart_for_update(session, cart_id, user_id)
    if await _released(session, cart_id, checkout_id):
        raise CartReleased("this checkout released the cart already", cart_id=str(cart_id))
    if cart.checkout_id == checkout_id and cart.status in (CartStatus.LOCKED, CartStatus.CONVERTED):
        pass  # a retry of our own step
    elif cart.status != CartStatus.ACTIVE:
        raise CartLocked("the cart is held by another checkout", cart_id=str(cart_id))
    else:
        if not await _items(session, cart_id):
            raise CartEmpty("the cart has no items", cart_id=str(cart_id))
        cart.status = CartStatus.LOCKED
        cart.checkout_id = checkout_id
        await _event(session, "locked", cart.id, cart.user_id, checkout_id)
    rows = (await (await session.connection()).execute(_lines(cart_id))).all()
    return LockedCart(cart.id, cart.currency, [_locked_line(row) for row in rows])


def _lines(cart_id: uuid.UUID) -> Select[Any]:
    """The columns of a cart's lines a locked cart reports, in variant order."""
    return (
        select(CartItem.product_id, CartItem.variant_id, CartItem.quantity, CartItem.price_snapshot)
        .where(CartItem.cart_id == cart_id)
        .order_by(CartItem.variant_id)
    )


def _locked_line(row: Row[Any]) -> LockedLine:
    return LockedLine(
        product_id=row.product_id,
        variant_id=row.variant_id,
        sku=str(row.price_snapshot["sku"]),
        quantity=row.quantity,
        unit_price=Decimal(str(row.price_snapshot["unit_price"])),
    )


async def _items(session: AsyncSession, cart_id: uuid.UUID) -> list[CartItem]:
    rows = await session.scalars(
        select(CartItem).where(CartItem.cart_id == cart_id).order_by(CartItem.variant_id)
    )
    return list(rows)


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
    await _event(session, "unlocked", cart.id, cart.user_id, checkout_id)
    return True


async def mark_converted(session: AsyncSession, cart_id: uuid.UUID, checkout_id: uuid.UUID) -> None:
    """The checkout holding the cart produced a paid order: the cart is done.

    One guarded UPDATE (locked by this checkout, to converted) and the event; a retry, whose cart
    is converted already, is a no-op, and a cart this checkout does not hold is CartLocked.
    """
    user_id = await (await session.connection()).scalar(
        update(Cart)
        .where(
            Cart.id == cart_id,
            Cart.checkout_id == checkout_id,
            Cart.status == CartStatus.LOCKED.value,
        )
        .values(status=CartStatus.CONVERTED.value)
        .returning(Cart.user_id)
    )
    if user_id is not None:
        await _event(session, "converted", cart_id, user_id, checkout_id)
        return
    held = await session.scalar(
        select(Cart.status).where(Cart.id == cart_id, Cart.checkout_id == checkout_id)
    )
    if held != CartStatus.CONVERTED:
        raise CartLocked("the cart is not held by this checkout", cart_id=str(cart_id))


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

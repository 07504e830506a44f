"""Cart steps of the checkout: lock (compensated by unlock) and mark converted."""

from __future__ import annotations

from temporalio import activity

from activities.cart.contract import CONVERT, LOCK, UNLOCK, CartRef, CartSnapshot, LockCartInput
from activities.shared import Line
from domains.cart import service
from kit.db import DomainDatabase


class CartActivities:
    """Activities on the `cart` task queue, holding only the cart database."""

    def __init__(self, db: DomainDatabase) -> None:
        self.db = db

    @activity.defn(name=LOCK.name)
    async def lock_cart(self, input: LockCartInput) -> CartSnapshot:
        """Hold the cart for the checkout and return its lines with their price snapshots."""
        async with self.db.begin() as session:
            cart = await service.lock_for_checkout(
                session, input.cart_id, input.user_id, input.checkout_id
            )
        return CartSnapshot(
            cart_id=cart.cart_id,
            currency=cart.currency,
            lines=[Line.model_validate(line, from_attributes=True) for line in cart.lines],
        )

    @activity.defn(name=UNLOCK.name)
    async def unlock_cart(self, input: CartRef) -> bool:
        """Compensation of lock: the cart is editable again (no-op if it was not held)."""
        async with self.db.begin() as session:
            return await service.unlock(session, input.cart_id, input.checkout_id)

    @activity.defn(name=CONVERT.name)
    async def mark_converted(self, input: CartRef) -> None:
        """The checkout completed: the cart is done."""
        async with self.db.begin() as session:
            await service.mark_converted(session, input.cart_id, input.checkout_id)

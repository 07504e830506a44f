"""Cart steps of the checkout: lock (compensated by unlock) and mark converted."""

from __future__ import annotations

from temporalio import activity

from activities.errors import business_failures
from domains.cart import service
from kit.db import DomainDatabase
from workflows.models import CartLine, CartRef, CartSnapshot, LockCartInput


class CartActivities:
    """Activities on the `cart` task queue, holding only the cart database."""

    def __init__(self, db: DomainDatabase) -> None:
        self.db = db

    @activity.defn(name="cart.lock")
    async def lock_cart(self, input: LockCartInput) -> CartSnapshot:
        """Hold the cart for the checkout and return its lines with their price snapshots."""
        with business_failures():
            async with self.db.begin() as session:
                cart = await service.lock_for_checkout(
                    session, input.cart_id, input.user_id, input.checkout_id
                )
        return CartSnapshot(
            cart_id=cart.cart_id,
            currency=cart.currency,
            lines=[
                CartLine(
                    product_id=line.product_id,
                    variant_id=line.variant_id,
                    sku=line.sku,
                    quantity=line.quantity,
                    unit_price=line.unit_price,
                )
                for line in cart.lines
            ],
        )

    @activity.defn(name="cart.unlock")
    async def unlock_cart(self, input: CartRef) -> bool:
        """Compensation of lock: the cart is editable again (no-op if it was not held)."""
        async with self.db.begin() as session:
            return await service.unlock(session, input.cart_id, input.checkout_id)

    @activity.defn(name="cart.convert")
    async def mark_converted(self, input: CartRef) -> None:
        """The checkout completed: the cart is done."""
        with business_failures():
            async with self.db.begin() as session:
                await service.mark_converted(session, input.cart_id, input.checkout_id)

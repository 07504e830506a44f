"""Coupon steps of the checkout: reserve (compensated by release) and confirm."""

from __future__ import annotations

from temporalio import activity

from activities.coupons.contract import (
    CONFIRM,
    RELEASE,
    RESERVE,
    CouponReservation,
    ReserveCouponInput,
)
from activities.shared import MoneyValue, OrderRef, ReleaseInput
from domains.coupons import service
from kit.db import DomainDatabase
from kit.money import Money


class CouponsActivities:
    """Activities on the `coupons` task queue, holding only the coupons database."""

    def __init__(self, db: DomainDatabase) -> None:
        self.db = db

    @activity.defn(name=RESERVE.name)
    async def reserve_coupon(self, input: ReserveCouponInput) -> CouponReservation:
        """Hold a redemption; `coupon_invalid` or `coupon_exhausted` when it cannot be had."""
        async with self.db.begin() as session:
            coupon, redemption = await service.reserve(
                session,
                code=input.code,
                checkout_id=input.checkout_id,
                user_id=input.user_id,
                subtotal=input.subtotal.money(),
                at=input.at,
            )
        return CouponReservation(
            redemption_id=redemption.id,
            code=coupon.code,
            discount=MoneyValue.of(Money.of(redemption.discount_amount, redemption.currency)),
        )

    @activity.defn(name=RELEASE.name)
    async def release_coupon(self, input: ReleaseInput) -> bool:
        """Compensation of reserve: give the redemption back (no-op if there is none)."""
        async with self.db.begin() as session:
            return await service.release(session, input.checkout_id)

    @activity.defn(name=CONFIRM.name)
    async def confirm_coupon(self, input: OrderRef) -> bool:
        """The payment is captured: the redemption is used by the order."""
        async with self.db.begin() as session:
            return await service.confirm(session, input.checkout_id, input.order_id)

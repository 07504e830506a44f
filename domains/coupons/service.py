"""Coupons: discounts, and redemptions held, confirmed or released by checkouts."""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from domains.coupons.errors import CouponCodeTaken, CouponExhausted, CouponInvalid, CouponNotFound
from domains.coupons.events import AGGREGATE, RedemptionEvent
from domains.coupons.models import Coupon, CouponRedemption
from domains.coupons.statuses import DiscountType, RedemptionStatus
from kit.db import insert_or_get
from kit.money import Money, normalize_currency
from kit.outbox import append_event

COUNTED = (RedemptionStatus.HELD.value, RedemptionStatus.CONFIRMED.value)


def normalize_code(code: str) -> str:
    """Codes compare case-insensitively; they are stored upper-case."""
    return code.strip().upper()


def discount_for(coupon: Coupon, subtotal: Money) -> Money:
    """The coupon's discount on `subtotal`: a percentage, or a fixed amount capped at it."""
    if coupon.discount_type == DiscountType.PERCENTAGE:
        return subtotal.percentage(Decimal(coupon.discount_value))
    return Money.of(coupon.discount_value, subtotal.currency).min(subtotal)


@dataclass(frozen=True)
class NewCoupon:
    """What an operator sets when creating a coupon."""

    code: str
    discount_type: DiscountType
    discount_value: Decimal
    valid_from: datetime
    valid_to: datetime
    currency: str | None = None
    max_redemptions: int | None = None
    max_per_user: int | None = None
    min_subtotal: Decimal | None = None


async def create_coupon(session: AsyncSession, spec: NewCoupon) -> Coupon:
    """A new coupon; CouponCodeTaken if the code exists (in any case)."""
    currency = normalize_currency(spec.currency) if spec.currency else None
    if spec.discount_type == DiscountType.FIXED or spec.min_subtotal is not None:
        if currency is None:
            raise CouponInvalid("fixed discounts and minimum subtotals need a currency")
        Money.of(spec.discount_value if spec.discount_type == DiscountType.FIXED else 0, currency)
        if spec.min_subtotal is not None:
            Money.of(spec.min_subtotal, currency)
    # Each field of the spec is its column; the code, type and currency as stored.
    stored = {
        "code": normalize_code(spec.code),
        "discount_type": spec.discount_type.value,
        "currency": currency,
    }
    coupon = Coupon(**(asdict(spec) | stored))
    session.add(coupon)
    try:
        await session.flush()
    except IntegrityError as exc:
        if "uq_coupons_code" in str(exc.orig):
            raise CouponCodeTaken("a coupon with this code exists") from exc
        raise
    return coupon


async def redeemed_count(session: AsyncSession, coupon_id: uuid.UUID) -> int:
    """Redemptions that count against the limit: held and confirmed."""
    count = await session.scalar(
        select(func.count())
        .select_from(CouponRedemption)
        .where(CouponRedemption.coupon_id == coupon_id, CouponRedemption.status.in_(COUNTED))
    )
    return int(count or 0)


async def get_coupon(session: AsyncSession, code: str) -> Coupon:
    """The coupon with this code."""
    coupon = await session.scalar(select(Coupon).where(Coupon.code == normalize_code(code)))
    if coupon is None:
        raise CouponNotFound("no coupon with this code")
    return coupon


async def _event(session: AsyncSession, kind: str, coupon: Coupon, r: CouponRedemption) -> None:
    await append_event(
        session,
        AGGREGATE,
        coupon.id,
        f"coupon.redemption_{kind}",
        RedemptionEvent(
            coupon_id=coupon.id,
            code=coupon.code,
            redemption_id=r.id,
            checkout_id=r.checkout_id,
            user_id=r.user_id,
            discount_amount=r.discount_amount,
            currency=r.currency,
            order_id=r.order_id,
        ),
    )


async def reserve(
    session: AsyncSession,
    *,
    code: str,
    checkout_id: uuid.UUID,
    user_id: uuid.UUID,
    subtotal: Money,
    at: datetime,
) -> tuple[Coupon, CouponRedemption]:
    """Hold one redemption of the coupon for `checkout_id` (idempotent per checkout).

    The coupon row is locked while the limits are counted, so concurrent checkouts of one
    coupon are serialised and can never exceed `max_redemptions` or `max_per_user`.
    """
    coupon = await session.scalar(
        select(Coupon).where(Coupon.code == normalize_code(code)).with_for_update()
    )
    if coupon is None:
        raise CouponInvalid("no coupon with this code")
    existing = await session.scalar(
        select(CouponRedemption).where(CouponRedemption.checkout_id == checkout_id)
    )
    if existing is not None:
        return coupon, existing  # a retry of our own step
    if not coupon.valid_from <= at < coupon.valid_to:
        raise CouponInvalid("the coupon is not valid now")
    if coupon.currency and coupon.currency != subtotal.currency:
        raise CouponInvalid(f"the coupon applies to {coupon.currency} carts only")
    if coupon.min_subtotal is not None and subtotal < Money.of(
        coupon.min_subtotal, subtotal.currency
    ):
        raise CouponInvalid("the cart is below the coupon's minimum subtotal")
    if coupon.max_redemptions is not None:
        if await redeemed_count(session, coupon.id) >= coupon.max_redemptions:
            raise CouponExhausted("the coupon has been used up")
    if coupon.max_per_user is not None:
        mine = await session.scalar(
            select(func.count())
            .select_from(CouponRedemption)
            .where(
                CouponRedemption.coupon_id == coupon.id,
                CouponRedemption.user_id == user_id,
                CouponRedemption.status.in_(COUNTED),
            )
        )
        if int(mine or 0) >= coupon.max_per_user:
            raise CouponExhausted("you have used this coupon as often as allowed")
    discount = discount_for(coupon, subtotal)
    redemption, created = await insert_or_get(
        session,
        CouponRedemption,
        {
            "id": uuid.uuid4(),
            "coupon_id": coupon.id,
            "user_id": user_id,
            "checkout_id": checkout_id,
            "status": RedemptionStatus.HELD.value,
            "discount_amount": discount.amount,
            "currency": discount.currency,
        },
        key=[CouponRedemption.checkout_id],
    )
    if created:  # else a concurrent attempt of the same checkout won
        await _event(session, "held", coupon, redemption)
    return coupon, redemption


async def _redemption(session: AsyncSession, checkout_id: uuid.UUID) -> CouponRedemption | None:
    return await session.scalar(
        select(CouponRedemption)
        .where(CouponRedemption.checkout_id == checkout_id)
        .with_for_update()
    )


async def release(session: AsyncSession, checkout_id: uuid.UUID) -> bool:
    """Give the checkout's redemption back; False when there was none to give back."""
    redemption = await _redemption(session, checkout_id)
    if redemption is None or redemption.status == RedemptionStatus.RELEASED:
        return False
    redemption.status = RedemptionStatus.RELEASED.value
    coupon = await session.get_one(Coupon, redemption.coupon_id)
    await _event(session, "released", coupon, redemption)
    return True


async def confirm(session: AsyncSession, checkout_id: uuid.UUID, order_id: uuid.UUID) -> bool:
    """Mark the checkout's redemption used by `order_id`; False if it had none to confirm."""
    redemption = await _redemption(session, checkout_id)
    if redemption is None:
        return False
    if redemption.status == RedemptionStatus.CONFIRMED:
        return True
    if redemption.status != RedemptionStatus.HELD:
        raise CouponInvalid("the redemption was released", checkout_id=str(checkout_id))
    redemption.status = RedemptionStatus.CONFIRMED.value
    redemption.order_id = order_id
    redemption.redeemed_at = datetime.now(UTC)
    coupon = await session.get_one(Coupon, redemption.coupon_id)
    await _event(session, "confirmed", coupon, redemption)
    return True

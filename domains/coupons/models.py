"""Tables of the `coupons` database (seed: coupons_db)."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, String, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from domains.coupons.statuses import DiscountType, RedemptionStatus
from kit.db import created_at_column, one_of, updated_at_column, uuid_pk
from kit.orm import domain_registry


class Base(DeclarativeBase):
    """Declarative base of the coupons database."""

    registry = domain_registry()


class Coupon(Base):
    """A discount code.

    Added: `currency` (required for fixed discounts and for `min_subtotal`), `max_redemptions`,
    `max_per_user`, `min_subtotal` (the coupon API's fields), `created_at`; codes stored upper-case
    so uniqueness is case-insensitive; a percentage lies in (0, 100].
    """

    __tablename__ = "coupons"
    __table_args__ = (
        one_of("discount_type", [t.value for t in DiscountType]),
        CheckConstraint("code = upper(code) AND length(code) > 0", name="code_upper"),
        CheckConstraint("discount_value > 0", name="value_positive"),
        CheckConstraint(
            "discount_type <> 'percentage' OR discount_value <= 100", name="percentage_max_100"
        ),
        CheckConstraint(
            "(discount_type <> 'fixed' AND min_subtotal IS NULL) OR currency IS NOT NULL",
            name="amounts_have_currency",
        ),
        CheckConstraint("valid_to > valid_from", name="range_ordered"),
        CheckConstraint("max_redemptions IS NULL OR max_redemptions > 0", name="max_positive"),
        CheckConstraint("max_per_user IS NULL OR max_per_user > 0", name="per_user_positive"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    code: Mapped[str] = mapped_column(String(64), unique=True)
    discount_type: Mapped[str] = mapped_column(String(16))
    discount_value: Mapped[Decimal]
    valid_from: Mapped[datetime]
    valid_to: Mapped[datetime]
    currency: Mapped[str | None] = mapped_column(String(3))
    max_redemptions: Mapped[int | None] = mapped_column(Integer)
    max_per_user: Mapped[int | None] = mapped_column(Integer)
    min_subtotal: Mapped[Decimal | None]
    created_at: Mapped[datetime] = created_at_column()


class CouponRedemption(Base):
    """A coupon used (or held) by one checkout.

    Added: `checkout_id` (unique: one redemption per checkout, the reservation's idempotency key),
    `status`, `discount_amount` and `currency` (what the checkout was granted), `created_at`,
    `updated_at`. `order_id` and `redeemed_at` are filled when the redemption is confirmed.
    """

    __tablename__ = "coupon_redemptions"
    __table_args__ = (
        one_of("status", [s.value for s in RedemptionStatus]),
        CheckConstraint("discount_amount >= 0", name="discount_non_negative"),
        Index(
            "ix_coupon_redemptions_counted",
            "coupon_id",
            "user_id",
            postgresql_where=text("status IN ('held', 'confirmed')"),
        ),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    coupon_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("coupons.id"))
    user_id: Mapped[uuid.UUID]
    order_id: Mapped[uuid.UUID | None]
    redeemed_at: Mapped[datetime | None]
    checkout_id: Mapped[uuid.UUID] = mapped_column(unique=True)
    status: Mapped[str] = mapped_column(String(16))
    discount_amount: Mapped[Decimal]
    currency: Mapped[str] = mapped_column(String(3))
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = updated_at_column()

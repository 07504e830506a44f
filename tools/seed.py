"""Seed catalog, stock, carts and coupons through the domain services (tests, benchmark, demos)."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import select

from domains.cart import service as cart_service
from domains.coupons import service as coupon_service
from domains.coupons.statuses import DiscountType
from domains.inventory import service as inventory_service
from domains.products import service as product_service
from domains.products.models import ProductVariant
from domains.products.statuses import ProductStatus
from kit.db import DomainDatabase
from kit.money import Money
from workflows.checkout.models import Address, CheckoutInput


@dataclass(frozen=True)
class SeededVariant:
    """A sellable variant with its price and stock."""

    product_id: uuid.UUID
    variant_id: uuid.UUID
    sku: str
    unit_price: Money
    price_id: uuid.UUID


class Seeder:
    """Writes through the same services the API uses, one short transaction each."""

    def __init__(self, databases: Mapping[str, DomainDatabase]) -> None:
        self.db = databases

    async def variant(
        self, price: str = "19.99", currency: str = "USD", stock: int = 100
    ) -> SeededVariant:
        """A product with one variant, priced and stocked."""
        sku = f"SKU-{uuid.uuid4().hex[:12].upper()}"
        money = Money.of(price, currency)
        # Prices open a second in the past so a checkout started right away sees them.
        opened = datetime.now(UTC) - timedelta(seconds=1)
        async with self.db["products"].begin() as session:
            product = await product_service.create_product(
                session,
                seller_id=uuid.uuid4(),
                title=f"Test product {sku}",
                description="",
                category_id=None,
                status=ProductStatus.ACTIVE,
                variants=[product_service.NewVariant(sku=sku, attributes={}, prices=[money])],
                now=opened,
            )
            variant_id = await session.scalar(
                select(ProductVariant.id).where(ProductVariant.product_id == product.id)
            )
            assert variant_id is not None
            quote = await product_service.quote_one(session, variant_id, currency)
        async with self.db["inventory"].begin() as session:
            await inventory_service.set_stock(session, variant_id, product.id, stock)
        return SeededVariant(product.id, variant_id, sku, money, quote.price_id)

    async def cart(
        self,
        user_id: uuid.UUID,
        lines: Sequence[tuple[SeededVariant, int]],
        currency: str = "USD",
    ) -> uuid.UUID:
        """An active cart of `user_id` holding `lines` at their current prices."""
        async with self.db["cart"].begin() as session:
            cart = await cart_service.create_cart(session, user_id, currency)
            for variant, quantity in lines:
                await cart_service.add_item(session, cart.id, user_id, variant, quantity)
            return cart.id

    async def coupon(
        self,
        *,
        percent: str | None = None,
        fixed: str | None = None,
        currency: str = "USD",
        max_redemptions: int | None = None,
        max_per_user: int | None = None,
        min_subtotal: str | None = None,
        valid_for: timedelta = timedelta(days=1),
    ) -> str:
        """A coupon valid from a minute ago; returns its code."""
        code = f"SAVE{uuid.uuid4().hex[:8].upper()}"
        now = datetime.now(UTC)
        async with self.db["coupons"].begin() as session:
            await coupon_service.create_coupon(
                session,
                coupon_service.NewCoupon(
                    code=code,
                    discount_type=DiscountType.PERCENTAGE if percent else DiscountType.FIXED,
                    discount_value=Decimal(percent or fixed or "0"),
                    valid_from=now - timedelta(minutes=1),
                    valid_to=now + valid_for,
                    currency=currency if (fixed or min_subtotal) else None,
                    max_redemptions=max_redemptions,
                    max_per_user=max_per_user,
                    min_subtotal=Decimal(min_subtotal) if min_subtotal else None,
                ),
            )
        return code

    async def reprice(self, variant: SeededVariant, price: str) -> None:
        """Change a variant's current price (the cart keeps its old snapshot)."""
        async with self.db["products"].begin() as session:
            await product_service.set_price(
                session,
                variant.product_id,
                variant.variant_id,
                Money.of(price, variant.unit_price.currency),
            )


def demo_address() -> Address:
    """A valid shipping address for tests and demos."""
    return Address(
        name="Ada Lovelace",
        line1="12 St James's Square",
        city="London",
        postal_code="SW1Y 4JH",
        country="GB",
    )


def new_input(
    *,
    user_id: uuid.UUID,
    cart_id: uuid.UUID,
    token: str = "tok_visa",
    coupon_code: str | None = None,
    payment_timeout: timedelta = timedelta(minutes=15),
    checkout_id: uuid.UUID | None = None,
    idempotency_key: str | None = None,
) -> CheckoutInput:
    """A checkout input with fresh ids, as the API would build it (tests, benchmark)."""
    key = idempotency_key or uuid.uuid4().hex
    return CheckoutInput(
        checkout_id=checkout_id or uuid.uuid4(),
        user_id=user_id,
        cart_id=cart_id,
        idempotency_key=key,
        request_hash=hashlib.sha256(key.encode()).hexdigest(),
        coupon_code=coupon_code,
        shipping_address=demo_address(),
        payment_token=token,
        payment_timeout_s=int(payment_timeout.total_seconds()),
    )

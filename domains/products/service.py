"""Catalog operations: products, variants, prices valid over time."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from domains.products.errors import NoPrice, PriceChanged, ProductNotFound, SkuTaken
from domains.products.events import PriceChangedEvent, ProductCreated
from domains.products.models import (
    DEFAULT_HEIGHT_MM,
    DEFAULT_LENGTH_MM,
    DEFAULT_WEIGHT_G,
    DEFAULT_WIDTH_MM,
    Product,
    ProductImage,
    ProductPrice,
    ProductVariant,
)
from domains.products.statuses import ProductStatus
from kit.money import Money
from kit.outbox import append_event


@dataclass(frozen=True)
class NewVariant:
    """A variant to create with its prices."""

    sku: str
    attributes: dict[str, Any]
    prices: Sequence[Money]
    # What one unit weighs and measures packed, grams and millimetres (unset: the defaults).
    weight_g: int | None = None
    length_mm: int | None = None
    width_mm: int | None = None
    height_mm: int | None = None


@dataclass(frozen=True)
class VariantParcel:
    """What one unit of a variant weighs (grams) and measures (millimetres) packed."""

    variant_id: uuid.UUID
    weight_g: int
    length_mm: int
    width_mm: int
    height_mm: int


@dataclass(frozen=True)
class PriceQuote:
    """A variant's price at an instant."""

    variant_id: uuid.UUID
    product_id: uuid.UUID
    sku: str
    price_id: uuid.UUID
    unit_price: Money


async def create_product(
    session: AsyncSession,
    *,
    seller_id: uuid.UUID,
    title: str,
    description: str,
    category_id: uuid.UUID | None,
    status: ProductStatus,
    variants: Sequence[NewVariant],
    images: Iterable[tuple[str, int]] = (),
    now: datetime | None = None,
) -> Product:
    """A product with its variants (in the order given), their opening prices and its images."""
    at = now or datetime.now(UTC)
    product = Product(
        id=uuid.uuid4(),
        seller_id=seller_id,
        title=title,
        description=description,
        category_id=category_id,
        status=status.value,
    )
    session.add(product)
    variant_rows = [
        ProductVariant(
            id=uuid.uuid4(),
            product_id=product.id,
            sku=spec.sku,
            attributes=spec.attributes,
            position=position,
            weight_g=spec.weight_g or DEFAULT_WEIGHT_G,
            length_mm=spec.length_mm or DEFAULT_LENGTH_MM,
            width_mm=spec.width_mm or DEFAULT_WIDTH_MM,
            height_mm=spec.height_mm or DEFAULT_HEIGHT_MM,
        )
        for position, spec in enumerate(variants)
    ]
    try:
        # Parents first: the models declare foreign keys but no relationships to order inserts by.
        await session.flush()
        session.add_all(variant_rows)
        await session.flush()
    except IntegrityError as exc:
        if "uq_product_variants_sku" in str(exc.orig):
            raise SkuTaken("a variant with this SKU exists") from exc
        raise
    for variant, spec in zip(variant_rows, variants, strict=True):
        session.add_all(
            ProductPrice(variant_id=variant.id, currency=p.currency, amount=p.amount, valid_from=at)
            for p in spec.prices
        )
    session.add_all(
        ProductImage(product_id=product.id, url=url, sort_order=order) for url, order in images
    )
    await session.flush()
    await append_event(
        session,
        "product",
        product.id,
        "product.created",
        ProductCreated(
            product_id=product.id,
            seller_id=seller_id,
            variant_ids=[v.id for v in variant_rows],
        ),
    )
    return product


async def set_price(
    session: AsyncSession,
    product_id: uuid.UUID,
    variant_id: uuid.UUID,
    price: Money,
    *,
    now: datetime | None = None,
) -> ProductPrice:
    """Close the open price of the variant in that currency and open a new one from `now`."""
    at = now or datetime.now(UTC)
    variant = await session.scalar(
        select(ProductVariant)
        .where(ProductVariant.id == variant_id, ProductVariant.product_id == product_id)
        .with_for_update()  # serialises price changes of one variant
    )
    if variant is None:
        raise ProductNotFound("no such variant", variant_id=str(variant_id))
    await session.execute(
        update(ProductPrice)
        .where(
            ProductPrice.variant_id == variant_id,
            ProductPrice.currency == price.currency,
            ProductPrice.valid_to.is_(None),
        )
        .values(valid_to=at)
    )
    row = ProductPrice(
        variant_id=variant_id, currency=price.currency, amount=price.amount, valid_from=at
    )
    session.add(row)
    await session.flush()
    await append_event(
        session,
        "product",
        product_id,
        "product.price_changed",
        PriceChangedEvent(
            product_id=product_id,
            variant_id=variant_id,
            currency=price.currency,
            amount=price.amount,
            valid_from=at,
        ),
    )
    return row


async def quote(
    session: AsyncSession, variant_ids: Iterable[uuid.UUID], currency: str, at: datetime
) -> dict[uuid.UUID, PriceQuote]:
    """Each variant's price in `currency` valid at `at` (variants without one are left out)."""
    rows = await session.execute(
        select(ProductPrice, ProductVariant)
        .join(ProductVariant, ProductVariant.id == ProductPrice.variant_id)
        .where(
            ProductPrice.variant_id.in_(list(variant_ids)),
            ProductPrice.currency == currency,
            ProductPrice.valid_from <= at,
            or_(ProductPrice.valid_to.is_(None), ProductPrice.valid_to > at),
        )
    )
    return {
        variant.id: PriceQuote(
            variant_id=variant.id,
            product_id=variant.product_id,
            sku=variant.sku,
            price_id=price.id,
            unit_price=Money.of(price.amount, price.currency),
        )
        for price, variant in rows
    }


async def quote_one(
    session: AsyncSession, variant_id: uuid.UUID, currency: str, at: datetime | None = None
) -> PriceQuote:
    """One variant's current price; NoPrice if it has none in `currency`."""
    quotes = await quote(session, [variant_id], currency, at or datetime.now(UTC))
    if variant_id not in quotes:
        raise NoPrice(f"no {currency} price for this variant", variant_id=str(variant_id))
    return quotes[variant_id]


@dataclass(frozen=True)
class SeenLine:
    """A cart line as the shopper saw it: variant, unit price, quantity."""

    variant_id: uuid.UUID
    unit_price: Money
    quantity: int


async def check_prices(
    session: AsyncSession, lines: Sequence[SeenLine], currency: str, at: datetime
) -> Money:
    """The subtotal at current prices; PriceChanged if any line's snapshot no longer holds."""
    quotes = await quote(session, [line.variant_id for line in lines], currency, at)
    changed = [
        str(line.variant_id)
        for line in lines
        if line.variant_id not in quotes or quotes[line.variant_id].unit_price != line.unit_price
    ]
    if changed:
        raise PriceChanged("prices changed since the items were added", variants=changed)
    total = Money.zero(currency)
    for line in lines:
        total = total + line.unit_price * line.quantity
    return total


@dataclass(frozen=True)
class ProductView:
    """A product with its variants, their prices open at an instant, and its images."""

    product: Product
    variants: list[ProductVariant]
    prices: dict[uuid.UUID, list[ProductPrice]]
    images: list[ProductImage]


async def get_product(
    session: AsyncSession, product_id: uuid.UUID, at: datetime | None = None
) -> ProductView:
    """The product as a shopper sees it at `at` (default now)."""
    when = at or datetime.now(UTC)
    product = await session.get(Product, product_id)
    if product is None:
        raise ProductNotFound("no such product", product_id=str(product_id))
    variants = list(
        await session.scalars(
            select(ProductVariant)
            .where(ProductVariant.product_id == product_id)
            .order_by(ProductVariant.position, ProductVariant.sku)
        )
    )
    prices: dict[uuid.UUID, list[ProductPrice]] = {v.id: [] for v in variants}
    rows = await session.scalars(
        select(ProductPrice)
        .where(
            ProductPrice.variant_id.in_(list(prices)),
            ProductPrice.valid_from <= when,
            or_(ProductPrice.valid_to.is_(None), ProductPrice.valid_to > when),
        )
        .order_by(ProductPrice.currency)
    )
    for price in rows:
        prices[price.variant_id].append(price)
    images = list(
        await session.scalars(
            select(ProductImage)
            .where(ProductImage.product_id == product_id)
            .order_by(ProductImage.sort_order)
        )
    )
    return ProductView(product, variants, prices, images)


async def variant_product(session: AsyncSession, variant_id: uuid.UUID) -> uuid.UUID:
    """The product a variant belongs to."""
    product_id = await session.scalar(
        select(ProductVariant.product_id).where(ProductVariant.id == variant_id)
    )
    if product_id is None:
        raise ProductNotFound("no such variant", variant_id=str(variant_id))
    return product_id


async def variant_parcels(
    session: AsyncSession, variant_ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, VariantParcel]:
    """Each known variant's packed weight and dimensions (unknown ids are left out)."""
    rows = await session.execute(
        select(
            ProductVariant.id,
            ProductVariant.weight_g,
            ProductVariant.length_mm,
            ProductVariant.width_mm,
            ProductVariant.height_mm,
        ).where(ProductVariant.id.in_(list(variant_ids)))
    )
    return {row.id: VariantParcel(*row) for row in rows}

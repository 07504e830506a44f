"""Tables of the `products` database (seed: products_db)."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from domains.products.statuses import ProductStatus
from kit.db import created_at_column, one_of, updated_at_column, uuid_pk
from kit.orm import domain_registry

# What a variant weighs and measures packed when its seller did not say (grams, millimetres).
DEFAULT_WEIGHT_G = 500
DEFAULT_LENGTH_MM = 300
DEFAULT_WIDTH_MM = 200
DEFAULT_HEIGHT_MM = 100


class Base(DeclarativeBase):
    """Declarative base of the products database."""

    registry = domain_registry()


class Product(Base):
    """A sellable product. Added: `status` is constrained to `ProductStatus`."""

    __tablename__ = "products"
    __table_args__ = (one_of("status", [s.value for s in ProductStatus]),)

    id: Mapped[uuid.UUID] = uuid_pk()
    seller_id: Mapped[uuid.UUID]
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, server_default="")
    category_id: Mapped[uuid.UUID | None]
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = updated_at_column()


class ProductVariant(Base):
    """One buyable variant (size, colour, ...) with a globally unique SKU.

    Added: `position`, the variant's place in the order the seller gave (XS, S, M, L, ...), in
    which the product shows its variants (as Shopify and Medusa rank them), not the SKUs' order;
    `weight_g` and `length_mm`/`width_mm`/`height_mm`, what one unit weighs and measures packed
    (the parcel a cart's shipping rates are priced for; defaults 500 g and 300x200x100 mm).
    """

    __tablename__ = "product_variants"
    __table_args__ = (
        CheckConstraint(
            "weight_g > 0 AND length_mm > 0 AND width_mm > 0 AND height_mm > 0",
            name="parcel_positive",
        ),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    product_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("products.id"), index=True)
    sku: Mapped[str] = mapped_column(String(64), unique=True)
    attributes: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
    position: Mapped[int] = mapped_column(Integer, server_default="0")
    weight_g: Mapped[int] = mapped_column(Integer, server_default=str(DEFAULT_WEIGHT_G))
    length_mm: Mapped[int] = mapped_column(Integer, server_default=str(DEFAULT_LENGTH_MM))
    width_mm: Mapped[int] = mapped_column(Integer, server_default=str(DEFAULT_WIDTH_MM))
    height_mm: Mapped[int] = mapped_column(Integer, server_default=str(DEFAULT_HEIGHT_MM))


class ProductPrice(Base):
    """A variant's price in one currency over `[valid_from, valid_to)`.

    Added: at most one open price (`valid_to IS NULL`) per variant and currency, so changing a
    price closes the open row and opens a new one; a non-negative amount; a well-ordered range.
    """

    __tablename__ = "product_prices"
    __table_args__ = (
        CheckConstraint("amount >= 0", name="amount_non_negative"),
        CheckConstraint("valid_to IS NULL OR valid_to > valid_from", name="range_ordered"),
        CheckConstraint("currency ~ '^[A-Z]{3}$'", name="currency_iso4217"),
        Index(
            "uq_product_prices_open",
            "variant_id",
            "currency",
            unique=True,
            postgresql_where=text("valid_to IS NULL"),
        ),
        Index("ix_product_prices_lookup", "variant_id", "currency", "valid_from"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    variant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("product_variants.id"))
    currency: Mapped[str] = mapped_column(String(3))
    amount: Mapped[Decimal]
    valid_from: Mapped[datetime]
    valid_to: Mapped[datetime | None]


class ProductImage(Base):
    """An image of a product, shown in `sort_order`."""

    __tablename__ = "product_images"

    id: Mapped[uuid.UUID] = uuid_pk()
    product_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("products.id"), index=True)
    url: Mapped[str] = mapped_column(String(2048))
    sort_order: Mapped[int] = mapped_column(Integer, server_default="0")

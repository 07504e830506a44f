"""Tables of the `cart` database (seed: cart_db)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, String, UniqueConstraint, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from domains.cart.statuses import CartStatus
from kit.db import created_at_column, one_of, updated_at_column, uuid_pk
from kit.orm import domain_registry


class Base(DeclarativeBase):
    """Declarative base of the cart database."""

    registry = domain_registry()


class Cart(Base):
    """A user's cart.

    Added: `currency` (a cart is priced in one currency); `checkout_id`, the checkout holding the
    lock, so that locking is idempotent for that checkout and refused for any other; a check that a
    locked cart names its checkout; `updated_at`.
    """

    __tablename__ = "carts"
    __table_args__ = (
        one_of("status", [s.value for s in CartStatus]),
        CheckConstraint(
            "status <> 'locked' OR checkout_id IS NOT NULL", name="locked_has_checkout"
        ),
        CheckConstraint("currency ~ '^[A-Z]{3}$'", name="currency_iso4217"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    user_id: Mapped[uuid.UUID] = mapped_column(index=True)
    status: Mapped[str] = mapped_column(String(16), server_default=CartStatus.ACTIVE.value)
    expires_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = created_at_column()
    currency: Mapped[str] = mapped_column(String(3))
    checkout_id: Mapped[uuid.UUID | None]
    updated_at: Mapped[datetime] = updated_at_column()


class CartItem(Base):
    """One line of a cart.

    `price_snapshot` holds what the shopper saw when adding the line: `{sku, unit_price, currency,
    price_id, priced_at}`; the checkout's price step compares it with the current price.
    Added: one line per variant (adding again merges), quantity 1..99, `created_at`.
    """

    __tablename__ = "cart_items"
    __table_args__ = (
        UniqueConstraint("cart_id", "variant_id"),
        CheckConstraint("quantity BETWEEN 1 AND 99", name="quantity_range"),
        Index("ix_cart_items_cart_id", "cart_id"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    cart_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("carts.id", ondelete="CASCADE"))
    product_id: Mapped[uuid.UUID]
    variant_id: Mapped[uuid.UUID]
    quantity: Mapped[int] = mapped_column(Integer)
    price_snapshot: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
    created_at: Mapped[datetime] = created_at_column()


class CartRelease(Base):
    """A checkout that gave its cart back (its lock was released, or it never got one).

    Not in the seed: an attempt of the lock step that Temporal abandoned (timed out, retried, or
    compensated with unlock) may still commit later; this record makes the cart refuse it, so a
    checkout that is over can never lock the cart again.
    """

    __tablename__ = "cart_releases"

    cart_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("carts.id", ondelete="CASCADE"), primary_key=True
    )
    checkout_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    released_at: Mapped[datetime] = created_at_column()

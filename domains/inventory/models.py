"""Tables of the `inventory` database (seed: inventory_db)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, Index, Integer, String, UniqueConstraint, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Re-exported (`as`): the sweeper imports it from here.
from domains.inventory.statuses import ReservationStatus as ReservationStatus
from kit.db import created_at_column, one_of, updated_at_column, uuid_pk
from kit.orm import domain_registry


class Base(DeclarativeBase):
    """Declarative base of the inventory database."""

    registry = domain_registry()


class InventoryItem(Base):
    """Stock of one variant.

    Added: `reserved`, the sum of active reservations, kept in the same transaction as the
    reservations themselves; the CHECK `0 <= reserved <= total_stock` makes overselling impossible
    at the database, whatever the code above it does. One row per variant; `updated_at`.
    """

    __tablename__ = "inventory_items"
    __table_args__ = (
        CheckConstraint("total_stock >= 0", name="stock_non_negative"),
        CheckConstraint("reserved >= 0 AND reserved <= total_stock", name="no_oversell"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    product_id: Mapped[uuid.UUID]
    variant_id: Mapped[uuid.UUID] = mapped_column(unique=True)
    total_stock: Mapped[int] = mapped_column(Integer)
    reserved: Mapped[int] = mapped_column(Integer, server_default="0")
    updated_at: Mapped[datetime] = updated_at_column()


class InventoryReservation(Base):
    """Units of a variant held for a checkout until `expires_at`.

    Added: `checkout_id` (the business key: one reservation per checkout and variant, so a retried
    step cannot reserve twice; `order_id` is only known later), `created_at`, `updated_at`, and an
    index of active reservations by expiry for the sweeper.
    """

    __tablename__ = "inventory_reservations"
    __table_args__ = (
        UniqueConstraint("checkout_id", "variant_id"),
        one_of("status", [s.value for s in ReservationStatus]),
        CheckConstraint("quantity > 0", name="quantity_positive"),
        Index(
            "ix_inventory_reservations_active_expiry",
            "expires_at",
            postgresql_where=text("status = 'active'"),
        ),
        Index("ix_inventory_reservations_variant", "variant_id", "status"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    order_id: Mapped[uuid.UUID | None]
    variant_id: Mapped[uuid.UUID]
    quantity: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    expires_at: Mapped[datetime]
    checkout_id: Mapped[uuid.UUID]
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = updated_at_column()


class InventoryRestock(Base):
    """Returned units put back on the shelf (added beside the seed).

    One row per (`return_id`, `order_item_id`): the row and the stock's increase commit together,
    so a retried or repeated restock of a return's line adds nothing twice.
    """

    __tablename__ = "inventory_restocks"
    __table_args__ = (
        UniqueConstraint("return_id", "order_item_id"),
        CheckConstraint("quantity > 0", name="quantity_positive"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    return_id: Mapped[uuid.UUID]
    order_item_id: Mapped[uuid.UUID]
    variant_id: Mapped[uuid.UUID]
    quantity: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = created_at_column()

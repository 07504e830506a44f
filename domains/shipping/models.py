"""Tables of the `shipping` database (seed: shipping_db)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from domains.shipping.statuses import ShipmentStatus
from kit.db import created_at_column, one_of, updated_at_column, uuid_pk
from kit.orm import domain_registry


class Base(DeclarativeBase):
    """Declarative base of the shipping database."""

    registry = domain_registry()


class Shipment(Base):
    """The shipment of one order.

    Added: one shipment per order (unique `order_id`, the step's idempotency key), `checkout_id`,
    `carrier_shipment_id` (the carrier's id, to cancel the booking), `label_url`, `ship_to` (the
    address handed to the carrier), `created_at`, `updated_at`, and a unique (carrier,
    tracking_number).
    """

    __tablename__ = "shipments"
    __table_args__ = (
        UniqueConstraint("carrier", "tracking_number"),
        one_of("status", [s.value for s in ShipmentStatus]),
        Index("ix_shipments_carrier_shipment", "carrier", "carrier_shipment_id"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    order_id: Mapped[uuid.UUID] = mapped_column(unique=True)
    carrier: Mapped[str] = mapped_column(String(32))
    tracking_number: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(24))
    shipped_at: Mapped[datetime | None]
    checkout_id: Mapped[uuid.UUID] = mapped_column(index=True)
    label_url: Mapped[str | None] = mapped_column(String(2048))
    carrier_shipment_id: Mapped[str | None] = mapped_column(String(64))
    ship_to: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = updated_at_column()


class ShipmentEvent(Base):
    """A tracking event. Added: `provider_event_id` (carrier webhooks are deduplicated on it)."""

    __tablename__ = "shipment_events"
    __table_args__ = (
        UniqueConstraint("shipment_id", "provider_event_id"),
        one_of("status", [s.value for s in ShipmentStatus]),
        Index("ix_shipment_events_shipment", "shipment_id", "occurred_at"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    shipment_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("shipments.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(24))
    occurred_at: Mapped[datetime]
    provider_event_id: Mapped[str] = mapped_column(String(128))

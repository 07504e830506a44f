"""Tables of the `shipping` database (seed: shipping_db)."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, UniqueConstraint
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


class LabelPurchase(Base):
    """A label the platform set out to buy, written before the purchase (added beside the seed).

    `key` names the purchase (`checkout:<id>` for an order's shipment, `return:<id>` for a
    return label); the carrier's shipment is recorded under it before its rate is bought, so a
    retry re-reads that shipment instead of creating (and paying for) a second one.
    """

    __tablename__ = "label_purchases"
    __table_args__ = (one_of("kind", ["outbound", "return"]),)

    key: Mapped[str] = mapped_column(String(80), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    order_id: Mapped[uuid.UUID] = mapped_column(index=True)
    carrier: Mapped[str] = mapped_column(String(32))
    carrier_shipment_id: Mapped[str] = mapped_column(String(64), unique=True)
    carrier_rate_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = created_at_column()


class ShippingQuote(Base):
    """A carrier's rate quoted for a cart, choosable at checkout until `expires_at` (added beside
    the seed).

    `address_fingerprint` (a SHA-256 of the normalized address) ties the quote to the address it
    was priced for; `carrier_shipment_id` and `carrier_rate_id` are what gets bought.
    """

    __tablename__ = "shipping_quotes"
    # Expired quotes are pruned by age (the shipping worker).
    __table_args__ = (Index("ix_shipping_quotes_expires_at", "expires_at"),)

    id: Mapped[uuid.UUID] = uuid_pk()
    cart_id: Mapped[uuid.UUID]
    user_id: Mapped[uuid.UUID | None]
    address_fingerprint: Mapped[str] = mapped_column(String(64))
    carrier: Mapped[str] = mapped_column(String(32))
    service: Mapped[str] = mapped_column(String(64))
    amount: Mapped[Decimal]
    currency: Mapped[str] = mapped_column(String(3))
    delivery_days: Mapped[int | None] = mapped_column(Integer)
    expires_at: Mapped[datetime]
    carrier_shipment_id: Mapped[str] = mapped_column(String(64))
    carrier_rate_id: Mapped[str] = mapped_column(String(64))
    # The parcel it was priced for, in grams and centimetres (`weight_g`, `length_cm`, ...).
    parcel: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = created_at_column()

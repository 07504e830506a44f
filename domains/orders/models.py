"""Tables of the `orders` database (seed: orders_db)."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    Sequence,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from domains.orders.statuses import AddressType, ReturnStatus

# Re-exported (`as`): the orders activities import it from here.
from domains.orders.statuses import OrderStatus as OrderStatus
from kit.db import created_at_column, one_of, updated_at_column, uuid_pk
from kit.orm import domain_registry


class Base(DeclarativeBase):
    """Declarative base of the orders database."""

    # The inbox dedups the events this domain consumes (not in the seed: exactly-once application
    # needs it).
    registry = domain_registry(inbox=True)


# Source of the human-readable order number; gaps are harmless, reuse is impossible.
order_number_seq = Sequence("order_number_seq", start=100001, metadata=Base.metadata)


class Order(Base):
    """An order.

    Added: `checkout_id` (unique: creating the order is idempotent per checkout, the seed only knows
    `order_id` downstream), `subtotal_amount`, `discount_amount`, `shipping_amount`, `tax_amount`
    and `coupon_code` (the total's breakdown), `updated_at`, `refunded_amount`; non-negative amounts
    with total = subtotal - discount + shipping + tax, refunds bounded by the total.

    `tax_amount` is all the tax: the lines' (on `order_items`) and the shipping's, which is the
    difference.
    """

    __tablename__ = "orders"
    __table_args__ = (
        one_of("status", [s.value for s in OrderStatus]),
        CheckConstraint("currency ~ '^[A-Z]{3}$'", name="currency_iso4217"),
        CheckConstraint(
            "subtotal_amount >= 0 AND discount_amount >= 0 AND total_amount >= 0",
            name="amounts_non_negative",
        ),
        CheckConstraint(
            "shipping_amount >= 0 AND tax_amount >= 0", name="shipping_and_tax_non_negative"
        ),
        CheckConstraint(
            "total_amount = subtotal_amount - discount_amount + shipping_amount + tax_amount",
            name="total_is_the_whole_price",
        ),
        CheckConstraint(
            "refunded_amount >= 0 AND refunded_amount <= total_amount",
            name="refunded_bounded",
        ),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    user_id: Mapped[uuid.UUID] = mapped_column(index=True)
    order_number: Mapped[str] = mapped_column(String(32), unique=True)
    status: Mapped[str] = mapped_column(String(24))
    total_amount: Mapped[Decimal]
    currency: Mapped[str] = mapped_column(String(3))
    created_at: Mapped[datetime] = created_at_column()
    checkout_id: Mapped[uuid.UUID] = mapped_column(unique=True)
    subtotal_amount: Mapped[Decimal]
    discount_amount: Mapped[Decimal]
    coupon_code: Mapped[str | None] = mapped_column(String(64))
    updated_at: Mapped[datetime] = updated_at_column()
    # What went back to the buyer, as the payment provider reports it (platform or dashboard).
    refunded_amount: Mapped[Decimal] = mapped_column(server_default="0")
    # What the buyer pays for delivery (before its tax), and all the tax of the order.
    shipping_amount: Mapped[Decimal] = mapped_column(server_default="0")
    tax_amount: Mapped[Decimal] = mapped_column(server_default="0")


class OrderItem(Base):
    """A line of an order at the price the buyer pays.

    Added: `sku`; one line per variant; `discount_amount`, the line's share of the order's discount
    (pro rata to line value, rounded half-up, the remainder on the largest line) and `tax_amount`,
    the tax on the line, both fixed when the order is created, so a refund of the line never
    recomputes them from today's prices, coupons or tax rates.
    """

    __tablename__ = "order_items"
    __table_args__ = (
        UniqueConstraint("order_id", "variant_id"),
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint("unit_price >= 0 AND total_price >= 0", name="prices_non_negative"),
        CheckConstraint(
            "discount_amount >= 0 AND discount_amount <= total_price AND tax_amount >= 0",
            name="line_money_bounded",
        ),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    order_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"))
    product_id: Mapped[uuid.UUID]
    variant_id: Mapped[uuid.UUID]
    quantity: Mapped[int] = mapped_column(Integer)
    unit_price: Mapped[Decimal]
    total_price: Mapped[Decimal]
    sku: Mapped[str] = mapped_column(String(64))
    discount_amount: Mapped[Decimal] = mapped_column(server_default="0")
    tax_amount: Mapped[Decimal] = mapped_column(server_default="0")


class OrderAddress(Base):
    """The shipping or billing address of an order. Added: one of each type per order."""

    __tablename__ = "order_addresses"
    __table_args__ = (
        UniqueConstraint("order_id", "type"),
        one_of("type", [t.value for t in AddressType]),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    order_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(16))
    address: Mapped[dict[str, Any]]


class StatusChangeColumns:
    """The columns of a status-change log: from which status to which, when, and why (`reason`:
    a failure code, an actor or a policy). The tables add the id of what changed."""

    id: Mapped[uuid.UUID] = uuid_pk()
    from_state: Mapped[str | None] = mapped_column(String(24))
    to_state: Mapped[str] = mapped_column(String(24))
    changed_at: Mapped[datetime] = created_at_column()
    reason: Mapped[str | None] = mapped_column(String(64))


class OrderStateTransition(StatusChangeColumns, Base):
    """Every status change of an order. Added: `reason` (a failure code or actor)."""

    __tablename__ = "order_state_transitions"
    __table_args__ = (
        one_of("to_state", [s.value for s in OrderStatus], name="to_state_valid"),
        Index("ix_order_state_transitions_order", "order_id", "changed_at"),
    )

    order_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"))


class OrderReturn(Base):
    """A buyer's return of some units of a delivered order (added beside the seed).

    Unique (`order_id`, `key_hash`): the buyer's Idempotency-Key (hashed with the buyer's id) makes
    one return per request; `fingerprint` is the request's, so the same key with another body is
    refused. `refund_amount` is fixed when the return is asked for (the lines' share, plus the
    shipping and its tax when the return completes the order's units); the label columns are the
    carrier's return label once bought; `note` an operator's (a rejection, a settlement by hand).
    """

    __tablename__ = "order_returns"
    __table_args__ = (
        UniqueConstraint("order_id", "key_hash"),
        one_of("status", [s.value for s in ReturnStatus]),
        CheckConstraint("currency ~ '^[A-Z]{3}$'", name="currency_iso4217"),
        CheckConstraint(
            "refund_amount >= 0 AND shipping_refund_amount >= 0 "
            "AND shipping_refund_amount <= refund_amount",
            name="refund_bounded",
        ),
        Index("ix_order_returns_status", "status", "created_at"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    order_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"))
    user_id: Mapped[uuid.UUID] = mapped_column(index=True)
    key_hash: Mapped[str] = mapped_column(String(64))
    fingerprint: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(24))
    reason: Mapped[str] = mapped_column(String(500))
    refund_amount: Mapped[Decimal]
    # The part of `refund_amount` that is the order's shipping and its tax.
    shipping_refund_amount: Mapped[Decimal] = mapped_column(server_default="0")
    currency: Mapped[str] = mapped_column(String(3))
    carrier: Mapped[str | None] = mapped_column(String(32))
    tracking_number: Mapped[str | None] = mapped_column(String(64))
    label_url: Mapped[str | None] = mapped_column(String(2048))
    note: Mapped[str | None] = mapped_column(String(1000))
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = updated_at_column()


class OrderReturnLine(Base):
    """Units of one order line in a return (added beside the seed).

    `received_quantity` is what came back, `restocked_quantity` what of it went back to stock:
    `restocked <= received <= quantity`, checked by the database. `refund_amount` is the line's
    share of the return's refund.
    """

    __tablename__ = "order_return_lines"
    __table_args__ = (
        UniqueConstraint("return_id", "order_item_id"),
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint(
            "restocked_quantity >= 0 AND restocked_quantity <= received_quantity "
            "AND received_quantity <= quantity",
            name="received_bounded",
        ),
        CheckConstraint("refund_amount >= 0", name="refund_non_negative"),
        Index("ix_order_return_lines_order_item", "order_item_id"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    return_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("order_returns.id", ondelete="CASCADE"))
    order_item_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("order_items.id", ondelete="CASCADE")
    )
    quantity: Mapped[int] = mapped_column(Integer)
    received_quantity: Mapped[int] = mapped_column(Integer, server_default="0")
    restocked_quantity: Mapped[int] = mapped_column(Integer, server_default="0")
    refund_amount: Mapped[Decimal]


class ReturnStateTransition(StatusChangeColumns, Base):
    """Every status change of a return, with its reason (an actor, a policy or a failure)."""

    __tablename__ = "return_state_transitions"
    __table_args__ = (
        one_of("to_state", [s.value for s in ReturnStatus], name="to_state_valid"),
        Index("ix_return_state_transitions_return", "return_id", "changed_at"),
    )

    return_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("order_returns.id", ondelete="CASCADE"))

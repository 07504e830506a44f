"""Tables of the `payments` database (seed: payments_db)."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from domains.payments.statuses import PaymentStatus, TransactionStatus

# Re-exported (`as`): the payments activities import it from here.
from domains.payments.statuses import TransactionType as TransactionType
from domains.payments.tax import TaxStatus
from kit.db import created_at_column, one_of, updated_at_column, uuid_pk
from kit.orm import domain_registry


class Base(DeclarativeBase):
    """Declarative base of the payments database."""

    registry = domain_registry()


class Payment(Base):
    """One checkout's payment.

    Added: `checkout_id` (unique: one payment per checkout, the idempotency anchor of the saga),
    `provider_payment_id` (the provider's intent id), `captured_amount` and `refunded_amount`
    (compared with the provider's ledger), `last_error_code`, `updated_at`; amounts bounded by
    what was authorized and captured.
    """

    __tablename__ = "payments"
    __table_args__ = (
        one_of("status", [s.value for s in PaymentStatus]),
        CheckConstraint("currency ~ '^[A-Z]{3}$'", name="currency_iso4217"),
        CheckConstraint(
            "amount >= 0 AND captured_amount >= 0 AND captured_amount <= amount "
            "AND refunded_amount >= 0 AND refunded_amount <= captured_amount",
            name="amounts_bounded",
        ),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    order_id: Mapped[uuid.UUID | None] = mapped_column(index=True)
    status: Mapped[str] = mapped_column(String(24))
    amount: Mapped[Decimal]
    currency: Mapped[str] = mapped_column(String(3))
    provider: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = created_at_column()
    checkout_id: Mapped[uuid.UUID] = mapped_column(unique=True)
    provider_payment_id: Mapped[str | None] = mapped_column(String(128), unique=True)
    captured_amount: Mapped[Decimal] = mapped_column(server_default="0")
    refunded_amount: Mapped[Decimal] = mapped_column(server_default="0")
    last_error_code: Mapped[str | None] = mapped_column(String(64))
    updated_at: Mapped[datetime] = updated_at_column()


class PaymentTransaction(Base):
    """One authorize, capture, void or refund call.

    Added: `idempotency_key` (unique, e.g. `<checkout_id>:capture`: a retried step finds its row
    instead of writing a second one) and `error_code`.
    """

    __tablename__ = "payment_transactions"
    __table_args__ = (
        one_of("type", [t.value for t in TransactionType]),
        one_of("status", [s.value for s in TransactionStatus]),
        CheckConstraint("amount >= 0", name="amount_non_negative"),
        Index("ix_payment_transactions_payment", "payment_id", "created_at"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    payment_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("payments.id"))
    provider_txn_id: Mapped[str | None] = mapped_column(String(128))
    type: Mapped[str] = mapped_column(String(16))
    amount: Mapped[Decimal]
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = created_at_column()
    idempotency_key: Mapped[str] = mapped_column(String(255), unique=True)
    error_code: Mapped[str | None] = mapped_column(String(64))


class PaymentIdempotencyKey(Base):
    """A key sent to the provider with the hash of its request.

    The same key with another request hash is refused before anything reaches the provider.
    Added: `response` (the provider's last answer, replayed on retry) and `completed_at`.
    """

    __tablename__ = "payment_idempotency_keys"

    id: Mapped[uuid.UUID] = uuid_pk()
    key: Mapped[str] = mapped_column(String(255), unique=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = created_at_column()
    response: Mapped[dict[str, Any] | None]
    completed_at: Mapped[datetime | None]


class PaymentWebhookEvent(Base):
    """The inbox of provider webhooks: one row per `webhook-id`, so redeliveries change nothing.

    Not in the seed: deduplicating at-least-once webhooks needs a durable record of what arrived.
    Rows older than `PSP_WEBHOOK_RETENTION` are pruned by the payments worker (`received_at`).
    """

    __tablename__ = "payment_webhook_events"
    __table_args__ = (
        UniqueConstraint("provider", "webhook_id"),
        Index("ix_payment_webhook_events_intent", "intent_id"),
        Index("ix_payment_webhook_events_received_at", "received_at"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    provider: Mapped[str] = mapped_column(String(32))
    webhook_id: Mapped[str] = mapped_column(String(128))
    event_type: Mapped[str] = mapped_column(String(64))
    intent_id: Mapped[str | None] = mapped_column(String(128))
    checkout_id: Mapped[uuid.UUID | None]
    payload: Mapped[dict[str, Any]]
    received_at: Mapped[datetime] = created_at_column()


class TaxRecord(Base):
    """A checkout's tax (domains/payments/tax.py): its calculation, the transaction recorded
    from it after the capture, and what reversals took back.

    `lines` holds each order line by reference: `amount`, `tax`, the provider's `item_id` of
    the transaction line, and the `reversed_amount` and `reversed_tax` so far; `shipping_*`
    the same of the shipping. `untaxed_reason` says why an `untaxed` checkout carries no tax
    (`tax_provider_none`, or `tax_unavailable` when the service was down and TAX_ON_FAILURE is
    `open`).
    """

    __tablename__ = "tax_transactions"
    __table_args__ = (
        one_of("status", [s.value for s in TaxStatus]),
        CheckConstraint("currency ~ '^[A-Z]{3}$'", name="currency_iso4217"),
        CheckConstraint(
            "tax_amount >= 0 AND shipping_amount >= 0 AND shipping_tax >= 0 "
            "AND shipping_tax <= tax_amount AND reversed_tax >= 0 AND reversed_tax <= tax_amount",
            name="amounts_bounded",
        ),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    checkout_id: Mapped[uuid.UUID] = mapped_column(unique=True)
    provider: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    currency: Mapped[str] = mapped_column(String(3))
    calculation_id: Mapped[str | None] = mapped_column(String(128))
    transaction_id: Mapped[str | None] = mapped_column(String(128), unique=True)
    tax_amount: Mapped[Decimal]
    shipping_amount: Mapped[Decimal]
    shipping_tax: Mapped[Decimal]
    reversed_tax: Mapped[Decimal] = mapped_column(server_default="0")
    lines: Mapped[dict[str, Any]]
    untaxed_reason: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = updated_at_column()


class TaxReversal(Base):
    """One reversal of a checkout's tax transaction, under its own key (a retried refund or
    return finds its row instead of reversing twice); `lines` what it took back by reference."""

    __tablename__ = "tax_reversals"
    __table_args__ = (
        one_of("mode", ["full", "partial"]),
        CheckConstraint("tax_amount >= 0", name="tax_amount_non_negative"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    tax_transaction_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tax_transactions.id"), index=True
    )
    reversal_key: Mapped[str] = mapped_column(String(255), unique=True)
    transaction_id: Mapped[str] = mapped_column(String(128), unique=True)
    mode: Mapped[str] = mapped_column(String(8))
    tax_amount: Mapped[Decimal]
    lines: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = created_at_column()

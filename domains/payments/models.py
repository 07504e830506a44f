"""Tables of the `payments` database (seed: payments_db)."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from domains.payments.statuses import (
    REQUEST_PURPOSES,
    DisputeStatus,
    PaymentStatus,
    RefundOrigin,
    RefundPurpose,
    RefundRequestStatus,
    RefundResolution,
    RefundStatus,
    TransactionStatus,
)

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


class PaymentRefund(Base):
    """One refund of a payment's capture, as the provider reports it, whoever made it.

    `origin` says who: the platform (a compensation, a late capture given back) or someone in the
    provider's dashboard (learnt from the provider's events); `purpose` says why (a
    `RefundPurpose`: the request's own for a refund request's refund; empty for a refund recorded
    before purposes were, until the provider's next word about it). A `failed` refund waits for
    an operator (`resolution` says how it was settled: retried or resolved with a note).
    """

    __tablename__ = "payment_refunds"
    __table_args__ = (
        one_of("status", [s.value for s in RefundStatus]),
        one_of("origin", [o.value for o in RefundOrigin]),
        one_of("resolution", [r.value for r in RefundResolution], name="resolution_valid"),
        one_of("purpose", [p.value for p in RefundPurpose]),
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("currency ~ '^[A-Z]{3}$'", name="currency_iso4217"),
        Index("ix_payment_refunds_payment", "payment_id", "created_at"),
        Index("ix_payment_refunds_status", "status"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    payment_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("payments.id"))
    provider_refund_id: Mapped[str] = mapped_column(String(128), unique=True)
    amount: Mapped[Decimal]
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(24))
    origin: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(64))
    failure_reason: Mapped[str | None] = mapped_column(String(64))
    resolution: Mapped[str | None] = mapped_column(String(16))
    resolution_note: Mapped[str | None] = mapped_column(String(1000))
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = updated_at_column()
    purpose: Mapped[str | None] = mapped_column(String(16))


class PaymentRefundRequest(Base):
    """A refund the platform was asked for (an operator's partial refund, a return), recorded
    before the provider is called so that its amount counts against the capture at once: two
    requests can never together give back more than was captured.

    `request_key` names the request (unique; it is also the provider's idempotency key), and
    `request_hash` fingerprints what was asked so that the same key with another amount or
    reason is refused. Once sent, `provider_refund_id` links it to its `payment_refunds` row,
    which carries the provider's status from then on. `allocations` optionally says which
    order lines the amount gives back (a return's).

    `purpose` and `owner_id` say who asked, and so who settles the refund when it fails:
    `operator_refund` with the order's id (an operator's partial refund: an operator retries it),
    or `return` with the return's id (its return asks the provider again itself). A request
    recorded without them (by the release before them, while this one rolls out) gets them from
    its key in the database (migration 0008's trigger, dropped once no such release runs).
    """

    __tablename__ = "payment_refund_requests"
    __table_args__ = (
        one_of("status", [s.value for s in RefundRequestStatus]),
        one_of("purpose", [p.value for p in REQUEST_PURPOSES]),
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("currency ~ '^[A-Z]{3}$'", name="currency_iso4217"),
        Index("ix_payment_refund_requests_payment", "payment_id", "status"),
        Index("ix_payment_refund_requests_order", "order_id", "created_at"),
        Index("ix_payment_refund_requests_provider_refund", "provider_refund_id"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    payment_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("payments.id"))
    order_id: Mapped[uuid.UUID]
    request_key: Mapped[str] = mapped_column(String(200), unique=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    amount: Mapped[Decimal]
    currency: Mapped[str] = mapped_column(String(3))
    reason: Mapped[str] = mapped_column(String(200))
    requested_by: Mapped[str] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16))
    provider_refund_id: Mapped[str | None] = mapped_column(String(128))
    failure_reason: Mapped[str | None] = mapped_column(String(64))
    allocations: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONB)
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = updated_at_column()
    purpose: Mapped[str] = mapped_column(String(16))
    owner_id: Mapped[uuid.UUID]


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


class PaymentDispute(Base):
    """A buyer's bank contesting a payment's capture (a chargeback), as the provider reports it.

    `evidence_due_by` is when the provider must have the merchant's answer; a closed dispute's
    status says how it ended (won: the money stays; lost: it went back to the buyer).
    """

    __tablename__ = "payment_disputes"
    __table_args__ = (
        one_of("status", [s.value for s in DisputeStatus]),
        CheckConstraint("amount >= 0", name="amount_non_negative"),
        CheckConstraint("currency ~ '^[A-Z]{3}$'", name="currency_iso4217"),
        Index("ix_payment_disputes_payment", "payment_id"),
        Index("ix_payment_disputes_status", "status"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    payment_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("payments.id"))
    provider_dispute_id: Mapped[str] = mapped_column(String(128), unique=True)
    amount: Mapped[Decimal]
    currency: Mapped[str] = mapped_column(String(3))
    reason: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(32))
    evidence_due_by: Mapped[datetime | None]
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

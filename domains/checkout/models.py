"""Tables of the `checkout` database (seed: checkout_db)."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, UniqueConstraint, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from domains.checkout.statuses import FINAL, CheckoutStatus, StepName, StepStatus
from kit.db import created_at_column, one_of, updated_at_column, uuid_pk
from kit.orm import domain_registry


class Base(DeclarativeBase):
    """Declarative base of the checkout database."""

    registry = domain_registry()


# The statuses of a checkout that has not ended, as an SQL list.
OPEN = tuple(s.value for s in CheckoutStatus if s not in FINAL)
OPEN_SQL = ", ".join(f"'{status}'" for status in OPEN)


class CheckoutSession(Base):
    """One checkout.

    Added: `idempotency_key` and `request_hash` (unique per user and key: a retried
    `POST /v1/checkouts` finds this row, another body under the same key is refused);
    `step`, `payment_status`, `next_action`, `payment_error`, `failure_code`, `failure_message`,
    and the order's `order_id`, `order_number`, `total_amount`, `currency`: the status body
    survives the workflow's retention in Temporal; `updated_at`, `completed_at`;
    `resolution_note`: what the operator wrote when settling by hand a checkout that waited at
    `needs_attention`.
    """

    __tablename__ = "checkout_sessions"
    __table_args__ = (
        UniqueConstraint("user_id", "idempotency_key"),
        one_of("status", [s.value for s in CheckoutStatus]),
        one_of("step", [s.value for s in StepName], name="step_valid"),
        # The checkouts not ended, per step and by last progress (the checkout worker's gauges
        # read them every 30 s): a few rows however many checkouts ever ended.
        Index(
            "ix_checkout_sessions_open",
            "step",
            "updated_at",
            postgresql_where=text(f"status IN ({OPEN_SQL})"),
        ),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    cart_id: Mapped[uuid.UUID] = mapped_column(index=True)
    user_id: Mapped[uuid.UUID] = mapped_column(index=True)
    status: Mapped[str] = mapped_column(String(24))
    created_at: Mapped[datetime] = created_at_column()
    idempotency_key: Mapped[str] = mapped_column(String(255))
    request_hash: Mapped[str] = mapped_column(String(64))
    step: Mapped[str] = mapped_column(String(32), server_default=StepName.LOCK_CART.value)
    payment_status: Mapped[str | None] = mapped_column(String(24))
    next_action: Mapped[dict[str, Any] | None]
    # Why the last payment method was declined, as the buyer may see it (`payment.last_error`).
    payment_error: Mapped[dict[str, Any] | None]
    failure_code: Mapped[str | None] = mapped_column(String(64))
    failure_message: Mapped[str | None] = mapped_column(String(500))
    order_id: Mapped[uuid.UUID | None]
    order_number: Mapped[str | None] = mapped_column(String(32))
    total_amount: Mapped[Decimal | None]
    currency: Mapped[str | None] = mapped_column(String(3))
    updated_at: Mapped[datetime] = updated_at_column()
    completed_at: Mapped[datetime | None]
    resolution_note: Mapped[str | None] = mapped_column(String(1000))


class CheckoutStep(Base):
    """One step of one checkout, upserted as it starts, ends, fails or is compensated.

    Added: one row per session and step name, `started_at`, `attempt`, `error_code`.
    """

    __tablename__ = "checkout_steps"
    __table_args__ = (
        UniqueConstraint("session_id", "step_name"),
        one_of("step_name", [s.value for s in StepName]),
        one_of("status", [s.value for s in StepStatus]),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    session_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("checkout_sessions.id", ondelete="CASCADE")
    )
    step_name: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    updated_at: Mapped[datetime] = updated_at_column()
    started_at: Mapped[datetime] = created_at_column()
    attempt: Mapped[int] = mapped_column(Integer, server_default="1")
    error_code: Mapped[str | None] = mapped_column(String(64))

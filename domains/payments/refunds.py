"""Refunds the platform is asked for after the sale: an operator's partial refund of an order,
a return's refund. Each is recorded as a request before the provider hears of it, in the same
transaction that checks it against what is left of the capture, so that two requests can never
together give back more than was captured.

What is left: the payment's captured amount, less its refunds that hold money (pending, waiting
for the buyer's action, or succeeded: the provider counts a refund from its creation until it
fails or is cancelled), less requests not sent yet. The payment row is locked while it is
counted: concurrent requests of one payment are decided one after the other.

A request is `requested` (its amount held), then `sent` (its provider refund, a `payment_refunds`
row with the request's own id, says where the money stands), or `rejected` when the provider
refused it (nothing moved, nothing is held).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from domains.payments import service
from domains.payments.errors import (
    IdempotencyKeyReused,
    PaymentNotCaptured,
    PaymentNotFound,
    RefundCurrencyMismatch,
    RefundExceedsCaptured,
    RefundNotFound,
)
from domains.payments.models import Payment, PaymentRefund, PaymentRefundRequest
from domains.payments.statuses import (
    REQUEST_PURPOSES,
    PaymentStatus,
    RefundPurpose,
    RefundRequestStatus,
    RefundStatus,
)
from kit.money import Money

# Refunds the provider counts against the capture.
HOLDING = (RefundStatus.PENDING, RefundStatus.REQUIRES_ACTION, RefundStatus.SUCCEEDED)
# Payments that captured money (a refunded one has nothing left, a disputed one may have some).
CAPTURED = (PaymentStatus.CAPTURED, PaymentStatus.REFUNDED, PaymentStatus.DISPUTED)


@dataclass(frozen=True)
class Requester:
    """Who a request is for, and so who settles its refund when it fails: `operator_refund` with
    the order's id, or `return` with the return's id."""

    purpose: RefundPurpose
    owner_id: uuid.UUID

    def __post_init__(self) -> None:
        if self.purpose not in REQUEST_PURPOSES:
            raise ValueError(f"a refund request is not asked for by {self.purpose.value}")


@dataclass(frozen=True)
class RefundAsk:
    """What is asked: `amount` of an order's payment back, under `key` (unique per request, and
    the provider's idempotency key), with a reason and who asked (`requested_by`, a person or a
    flow; `requester`, the purpose and its owner: None only for an ask scheduled by the release
    before them, whose request the database completes). `allocations` optionally says which
    order lines it gives back (e.g. `{"reference": sku, "quantity": 1, "amount": "9.90"}`)."""

    order_id: uuid.UUID
    amount: Money
    key: str
    reason: str
    requested_by: str
    requester: Requester | None = None
    allocations: list[dict[str, Any]] | None = field(default=None)

    def fingerprint(self) -> str:
        """What the request asks, hashed: the same key must always ask the same."""
        return service.request_hash(
            {
                "order_id": str(self.order_id),
                "amount": str(self.amount.amount),
                "currency": self.amount.currency,
                "reason": self.reason,
                "allocations": self.allocations,
            }
        )


@dataclass(frozen=True)
class RequestView:
    """A refund request with its payment, and its provider refund once sent."""

    request: PaymentRefundRequest
    payment: Payment
    refund: PaymentRefund | None

    @property
    def return_id(self) -> uuid.UUID | None:
        """The return that asked for it, if a return did."""
        return return_of(self.request)

    @property
    def status(self) -> str:
        """Where the money stands: the provider refund's status once it exists, `pending` until
        then, `rejected` when the provider refused it."""
        if self.refund is not None:
            return self.refund.status
        if self.request.status == RefundRequestStatus.REJECTED.value:
            return RefundRequestStatus.REJECTED.value
        return RefundStatus.PENDING.value


def return_of(request: PaymentRefundRequest | None) -> uuid.UUID | None:
    """The return that asked for `request`, if a return did (as recorded with the request)."""
    if request is None or request.purpose != RefundPurpose.RETURN.value:
        return None
    return request.owner_id


async def payment_of_order(
    session: AsyncSession, order_id: uuid.UUID, *, lock: bool = False
) -> Payment:
    """The order's payment (PaymentNotFound when it never had one)."""
    missing = PaymentNotFound("the order has no payment", order_id=str(order_id))
    query = select(Payment).where(Payment.order_id == order_id)
    return await service.one_row(session, query, missing, lock=lock)


async def refundable(session: AsyncSession, payment: Payment) -> Money:
    """What is left of the payment's capture to refund (lock the payment to rely on it)."""
    held = await session.scalar(
        select(func.coalesce(func.sum(PaymentRefund.amount), 0)).where(
            PaymentRefund.payment_id == payment.id,
            PaymentRefund.status.in_([s.value for s in HOLDING]),
        )
    )
    asked = await session.scalar(
        select(func.coalesce(func.sum(PaymentRefundRequest.amount), 0)).where(
            PaymentRefundRequest.payment_id == payment.id,
            PaymentRefundRequest.status == RefundRequestStatus.REQUESTED.value,
        )
    )
    left = Money.of(payment.captured_amount, payment.currency)
    return left - Money.of(held or 0, payment.currency) - Money.of(asked or 0, payment.currency)


async def request_refund(session: AsyncSession, ask: RefundAsk) -> PaymentRefundRequest:
    """Record `ask` against what is left of the order's capture, or the request recorded under
    its key before (the same ask again). IdempotencyKeyReused for the key with another ask;
    RefundCurrencyMismatch, PaymentNotCaptured, RefundExceedsCaptured record nothing."""
    try:
        payment = await payment_of_order(session, ask.order_id, lock=True)
    except PaymentNotFound as exc:  # a zero total took no payment: there is nothing to give back
        raise PaymentNotCaptured(
            "the order has no payment to refund", order_id=str(ask.order_id)
        ) from exc
    earlier = await session.scalar(
        select(PaymentRefundRequest).where(PaymentRefundRequest.request_key == ask.key)
    )
    if earlier is not None:
        if earlier.request_hash != ask.fingerprint():
            raise IdempotencyKeyReused("this key asked for another refund", key=ask.key)
        return earlier
    if ask.amount.currency != payment.currency:
        raise RefundCurrencyMismatch(
            "the refund's currency is not the payment's",
            currency=ask.amount.currency,
            payment_currency=payment.currency,
        )
    if payment.status not in CAPTURED or payment.captured_amount <= 0:
        raise PaymentNotCaptured(
            "the order's payment has captured nothing to refund",
            order_id=str(ask.order_id),
            payment_status=payment.status,
        )
    left = await refundable(session, payment)
    if ask.amount > left:
        raise RefundExceedsCaptured(
            "the refund is more than is left of the captured amount",
            requested=str(ask.amount.amount),
            refundable=str(left.amount),
            currency=left.currency,
        )
    row = PaymentRefundRequest(
        id=uuid.uuid4(),
        payment_id=payment.id,
        order_id=ask.order_id,
        request_key=ask.key,
        request_hash=ask.fingerprint(),
        amount=ask.amount.amount,
        currency=ask.amount.currency,
        reason=ask.reason,
        requested_by=ask.requested_by,
        status=RefundRequestStatus.REQUESTED.value,
        allocations=ask.allocations,
    )
    if ask.requester is not None:
        row.purpose, row.owner_id = ask.requester.purpose.value, ask.requester.owner_id
    session.add(row)
    await session.flush()
    if ask.requester is None:  # the database filled them in (see PaymentRefundRequest)
        await session.refresh(row, ["purpose", "owner_id"])
    return row


async def request_view(
    session: AsyncSession, request_id: uuid.UUID, *, lock: bool = False
) -> RequestView:
    """One refund request with its payment and provider refund (RefundNotFound)."""
    missing = RefundNotFound("no such refund", refund_id=str(request_id))
    query = select(PaymentRefundRequest).where(PaymentRefundRequest.id == request_id)
    request = await service.one_row(session, query, missing, lock=lock)
    payment = await session.get_one(Payment, request.payment_id)
    refund = None
    if request.provider_refund_id is not None:
        refund = await session.scalar(
            select(PaymentRefund).where(
                PaymentRefund.provider_refund_id == request.provider_refund_id
            )
        )
    return RequestView(request, payment, refund)


async def mark_sent(
    session: AsyncSession, request: PaymentRefundRequest, provider_refund_id: str
) -> None:
    """The provider made the request's refund: its `payment_refunds` row holds it from now."""
    request.status = RefundRequestStatus.SENT.value
    request.provider_refund_id = provider_refund_id
    await session.flush()


async def mark_rejected(session: AsyncSession, request: PaymentRefundRequest, reason: str) -> None:
    """The provider refused the request's refund: nothing moved, its amount is held no more."""
    request.status = RefundRequestStatus.REJECTED.value
    request.failure_reason = reason[:64]
    await session.flush()
